// RUN: pullback opt %s -p jvp | filecheck %s
// RUN: pullback opt %s -p 'jvp{func=exp}' | filecheck %s --check-prefix=FUNC

// Forward mode adds @F_jvp(args..., tangents...) -> (results..., tangents...) after each
// @F: one tangent argument per float argument, one tangent result per float result; each
// primal op is followed by its JVP rule.

// d(x + y) = dx + dy.
func.func @add(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.add %x, %y : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @add_jvp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[Y:[0-9]+]]: tensor<3xf64>, %[[TX:[0-9]+]]: tensor<3xf64>, %[[TY:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK-SAME:  pullback.derivative = "jvp", pullback.tangents = array<i64: 0, 1>
// CHECK-NEXT:    %[[R:[0-9]+]] = array.add %[[X]], %[[Y]] : tensor<3xf64>
// CHECK-NEXT:    %[[T:[0-9]+]] = array.add %[[TX]], %[[TY]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[R]], %[[T]] : tensor<3xf64>, tensor<3xf64>

// d(x * y) = dx * y + x * dy.
func.func @mul(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.mul %x, %y : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @mul_jvp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[Y:[0-9]+]]: tensor<3xf64>, %[[TX:[0-9]+]]: tensor<3xf64>, %[[TY:[0-9]+]]: tensor<3xf64>)
// CHECK-NEXT:    %[[R:[0-9]+]] = array.mul %[[X]], %[[Y]] : tensor<3xf64>
// CHECK-NEXT:    %[[A:[0-9]+]] = array.mul %[[TX]], %[[Y]] : tensor<3xf64>
// CHECK-NEXT:    %[[B:[0-9]+]] = array.mul %[[X]], %[[TY]] : tensor<3xf64>
// CHECK-NEXT:    %[[T:[0-9]+]] = array.add %[[A]], %[[B]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[R]], %[[T]]

// d exp(x) = dx * exp(x), reusing the primal result.
func.func @exp(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.exp %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @exp_jvp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %[[TX:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK-NEXT:    %[[E:[0-9]+]] = array.exp %[[X]] : tensor<3xf64>
// CHECK-NEXT:    %[[T:[0-9]+]] = array.mul %[[TX]], %[[E]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[E]], %[[T]]

// d(A B) = dA B + A dB.
func.func @matmul(%a: tensor<2x3xf64>, %b: tensor<3x4xf64>) -> tensor<2x4xf64> {
  %0 = array.matmul %a, %b : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
  func.return %0 : tensor<2x4xf64>
}
// CHECK-LABEL: func.func @matmul_jvp
// CHECK-SAME:  (%[[A:[0-9]+]]: tensor<2x3xf64>, %[[B:[0-9]+]]: tensor<3x4xf64>, %[[TA:[0-9]+]]: tensor<2x3xf64>, %[[TB:[0-9]+]]: tensor<3x4xf64>) -> (tensor<2x4xf64>, tensor<2x4xf64>)
// CHECK-NEXT:    %[[R:[0-9]+]] = array.matmul %[[A]], %[[B]]
// CHECK-NEXT:    %[[P:[0-9]+]] = array.matmul %[[TA]], %[[B]] : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
// CHECK-NEXT:    %[[Q:[0-9]+]] = array.matmul %[[A]], %[[TB]] : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
// CHECK-NEXT:    %[[T:[0-9]+]] = array.add %[[P]], %[[Q]] : tensor<2x4xf64>
// CHECK-NEXT:    func.return %[[R]], %[[T]]

// An integer argument takes no tangent; a float result that depends on no tangent gets an
// explicit zero, marked `pullback.zero` (a structural zero `simplify` may absorb).
func.func @constant(%x: tensor<3xf64>, %n: tensor<3xi64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %0 = array.full 2.0 : f64 : tensor<3xf64>
  %1 = array.neg %x : tensor<3xf64>
  func.return %0, %1 : tensor<3xf64>, tensor<3xf64>
}
// CHECK-LABEL: func.func @constant_jvp
// CHECK-SAME:  (%[[X:[0-9]+]]: tensor<3xf64>, %{{[0-9]+}}: tensor<3xi64>, %[[TX:[0-9]+]]: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, tensor<3xf64>)
// CHECK-SAME:  pullback.tangents = array<i64: 0>
// CHECK-NEXT:    %[[C:[0-9]+]] = array.full 2.000000e+00 : f64 : tensor<3xf64>
// CHECK-NEXT:    %[[N:[0-9]+]] = array.neg %[[X]] : tensor<3xf64>
// CHECK-NEXT:    %[[TN:[0-9]+]] = array.neg %[[TX]] : tensor<3xf64>
// CHECK-NEXT:    %[[Z:[0-9]+]] = array.full 0.000000e+00 : f64 {pullback.zero} : tensor<3xf64>
// CHECK-NEXT:    func.return %[[C]], %[[N]], %[[Z]], %[[TN]]

// `func` picks the one function to differentiate.
// FUNC-NOT:    @add_jvp
// FUNC:        func.func @exp_jvp
// FUNC-NOT:    _jvp
