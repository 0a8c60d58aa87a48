// RUN: pullback opt %s -p autodiff | filecheck %s
// RUN: pullback opt %s -p 'autodiff{func=mul wrt=1}' | filecheck %s --check-prefix=WRT
// RUN: pullback opt %s -p 'autodiff{func=sum seed=true}' | filecheck %s --check-prefix=SEED

// Reverse mode adds @F_vjp(args..., cotangents...) -> (results..., gradients...) after
// each @F: the primal is cloned, `ad.reverse_begin` marks where the adjoint sweep starts,
// and each op's VJP rule turns its result's cotangent into its operands' cotangents.

// d(x + y) = dx + dy: both gradients are the cotangent itself, no op needed.
func.func @add(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.add %x, %y : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @add_vjp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[Y:[0-9]+]]: tensor<3xf64>, %[[CT:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>, tensor<3xf64>)
// CHECK-SAME: pullback.derivative = "vjp", pullback.wrt = array<i64: 0, 1>, pullback.cotangents = array<i64: 0>
// CHECK-NEXT:    %[[R:[0-9]+]] = array.add %[[X]], %[[Y]] : tensor<3xf64>
// CHECK-NEXT:    ad.reverse_begin
// CHECK-NEXT:    func.return %[[R]], %[[CT]], %[[CT]] : tensor<3xf64>, tensor<3xf64>, tensor<3xf64>

// d(x * y) = dx * y + x * dy: the gradient of x is ct * y, that of y is x * ct.
func.func @mul(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.mul %x, %y : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @mul_vjp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[Y:[0-9]+]]: tensor<3xf64>, %[[CT:[0-9]+]]: tensor<3xf64>)
// CHECK-NEXT:    %[[R:[0-9]+]] = array.mul %[[X]], %[[Y]] : tensor<3xf64>
// CHECK-NEXT:    ad.reverse_begin
// CHECK-NEXT:    %[[GX:[0-9]+]] = array.mul %[[CT]], %[[Y]] : tensor<3xf64>
// CHECK-NEXT:    %[[GY:[0-9]+]] = array.mul %[[X]], %[[CT]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[R]], %[[GX]], %[[GY]]

// exp' = exp: the gradient reuses the primal result instead of recomputing it.
func.func @exp(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.exp %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @exp_vjp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[CT:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK-NEXT:    %[[E:[0-9]+]] = array.exp %[[X]] : tensor<3xf64>
// CHECK-NEXT:    ad.reverse_begin
// CHECK-NEXT:    %[[G:[0-9]+]] = array.mul %[[CT]], %[[E]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[E]], %[[G]]

// C = A B: dA = dC B^T (2x4 times 4x3), dB = A^T dC (3x2 times 2x4).
func.func @matmul(%a: tensor<2x3xf64>, %b: tensor<3x4xf64>) -> tensor<2x4xf64> {
  %0 = array.matmul %a, %b : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
  func.return %0 : tensor<2x4xf64>
}
// CHECK-LABEL: func.func @matmul_vjp
// CHECK-SAME:  (%[[A:[0-9]+]]: tensor<2x3xf64>, %[[B:[0-9]+]]: tensor<3x4xf64>, %[[CT:[0-9]+]]: tensor<2x4xf64>) -> (tensor<2x4xf64>, tensor<2x3xf64>, tensor<3x4xf64>)
// CHECK:         ad.reverse_begin
// CHECK-NEXT:    %[[BT:[0-9]+]] = array.transpose %[[B]] {permutation = array<i64: 1, 0>} : tensor<3x4xf64> -> tensor<4x3xf64>
// CHECK-NEXT:    %[[GA:[0-9]+]] = array.matmul %[[CT]], %[[BT]] : tensor<2x4xf64>, tensor<4x3xf64> -> tensor<2x3xf64>
// CHECK-NEXT:    %[[AT:[0-9]+]] = array.transpose %[[A]] {permutation = array<i64: 1, 0>} : tensor<2x3xf64> -> tensor<3x2xf64>
// CHECK-NEXT:    %[[GB:[0-9]+]] = array.matmul %[[AT]], %[[CT]] : tensor<3x2xf64>, tensor<2x4xf64> -> tensor<3x4xf64>
// CHECK-NEXT:    func.return %{{[0-9]+}}, %[[GA]], %[[GB]]

// The transpose of a full sum is a broadcast of the scalar cotangent to every element.
func.func @sum(%x: tensor<2x3xf64>) -> tensor<f64> {
  %0 = array.reduce_sum %x {axes = array<i64: 0, 1>} : tensor<2x3xf64> -> tensor<f64>
  func.return %0 : tensor<f64>
}
// CHECK-LABEL: func.func @sum_vjp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<2x3xf64>, %[[CT:[0-9]+]]: tensor<f64>) -> (tensor<f64>, tensor<2x3xf64>)
// CHECK:         ad.reverse_begin
// CHECK-NEXT:    %[[R:[0-9]+]] = array.reshape %[[CT]] : tensor<f64> -> tensor<1x1xf64>
// CHECK-NEXT:    %[[G:[0-9]+]] = array.broadcast %[[R]] : tensor<1x1xf64> -> tensor<2x3xf64>
// CHECK-NEXT:    func.return %{{[0-9]+}}, %[[G]]

// A value used twice accumulates its two cotangents with array.add: d(x*x) = 2 x dx.
func.func @square(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.mul %x, %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @square_vjp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[CT:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK:         ad.reverse_begin
// CHECK-NEXT:    %[[G1:[0-9]+]] = array.mul %[[CT]], %[[X]] : tensor<3xf64>
// CHECK-NEXT:    %[[G2:[0-9]+]] = array.mul %[[X]], %[[CT]] : tensor<3xf64>
// CHECK-NEXT:    %[[G:[0-9]+]] = array.add %[[G1]], %[[G2]] : tensor<3xf64>
// CHECK-NEXT:    func.return %{{[0-9]+}}, %[[G]]

// An argument with no path to a result, and an integer argument, get no gradient result:
// `pullback.wrt` lists only argument 0.
func.func @inactive(%x: tensor<3xf64>, %unused: tensor<3xf64>, %n: tensor<3xi64>) -> tensor<3xf64> {
  %0 = array.sin %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @inactive_vjp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %{{[0-9]+}}: tensor<3xf64>, %{{[0-9]+}}: tensor<3xi64>, %[[CT:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK-SAME: pullback.wrt = array<i64: 0>
// CHECK:         ad.reverse_begin
// CHECK-NEXT:    %[[C:[0-9]+]] = array.cos %[[X]] : tensor<3xf64>
// CHECK-NEXT:    %[[G:[0-9]+]] = array.mul %[[CT]], %[[C]] : tensor<3xf64>
// CHECK-NEXT:    func.return %{{[0-9]+}}, %[[G]]

// `func` picks one function and `wrt` the arguments: only @mul_vjp, with the gradient of y.
// WRT-NOT:     @add_vjp
// WRT-LABEL:   func.func @mul_vjp
// WRT-SAME:    (%[[X:[0-9]+]]: tensor<3xf64>, %[[Y:[0-9]+]]: tensor<3xf64>, %[[CT:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// WRT-SAME:    pullback.wrt = array<i64: 1>
// WRT:           ad.reverse_begin
// WRT-NEXT:      %[[GY:[0-9]+]] = array.mul %[[X]], %[[CT]] : tensor<3xf64>
// WRT-NEXT:      func.return %{{[0-9]+}}, %[[GY]] : tensor<3xf64>, tensor<3xf64>
// WRT-NOT:     _vjp

// `seed`: a scalar result takes the constant cotangent 1 instead of an argument (a gradient).
// SEED-LABEL:  func.func @sum_vjp
// SEED-SAME:   (%[[X:[0-9]+]]: tensor<2x3xf64>) -> (tensor<f64>, tensor<2x3xf64>)
// SEED-SAME:   pullback.cotangents = array<i64>
// SEED:          ad.reverse_begin
// SEED-NEXT:     %[[ONE:[0-9]+]] = array.full 1.000000e+00 : f64 : tensor<f64>
// SEED-NEXT:     %[[R:[0-9]+]] = array.reshape %[[ONE]] : tensor<f64> -> tensor<1x1xf64>
// SEED-NEXT:     %[[G:[0-9]+]] = array.broadcast %[[R]] : tensor<1x1xf64> -> tensor<2x3xf64>
// SEED-NEXT:     func.return %{{[0-9]+}}, %[[G]]
