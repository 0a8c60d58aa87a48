// RUN: pullback opt %s -p fuse | filecheck %s
// RUN: pullback opt %s -p fuse | pullback opt - -p fuse | filecheck %s --check-prefix=AGAIN

// `fuse` writes each kernel of the fusion plan as a `kernel.fused` region op over
// tensors: its operands are the stored values it reads (the region's arguments), its
// results the values it stores, then the reductions it folds in.

// exp(x) is read by the division in a second kernel, after the row sums are complete,
// so the first kernel stores it (its first result) next to the sums (stores 1, then one
// reduction); the second reads both.
func.func @softmax(%x: tensor<2x3xf64>) -> tensor<2x3xf64> {
  %0 = array.exp %x : tensor<2x3xf64>
  %1 = array.reduce_sum %0 {axes = array<i64: 1>} : tensor<2x3xf64> -> tensor<2xf64>
  %2 = array.reshape %1 : tensor<2xf64> -> tensor<2x1xf64>
  %3 = array.broadcast %2 : tensor<2x1xf64> -> tensor<2x3xf64>
  %4 = array.div %0, %3 : tensor<2x3xf64>
  func.return %4 : tensor<2x3xf64>
}
// CHECK-LABEL: func.func @softmax
// CHECK-SAME:  (%[[X:[a-z0-9]+]]: tensor<2x3xf64>)
// CHECK-NEXT:    %[[E:[0-9]+]], %[[S:[0-9]+]] = kernel.fused "fused" domain [2, 3] stores 1 ins(%[[X]] : tensor<2x3xf64>) -> (tensor<2x3xf64>, tensor<2xf64>) {
// CHECK-NEXT:    ^{{.*}}(%[[A:[0-9]+]]: tensor<2x3xf64>):
// CHECK-NEXT:      %[[EA:[0-9]+]] = array.exp %[[A]]
// CHECK-NEXT:      %[[SA:[0-9]+]] = array.reduce_sum %[[EA]] {axes = array<i64: 1>}
// CHECK-NEXT:      kernel.yield %[[EA]], %[[SA]] : tensor<2x3xf64>, tensor<2xf64>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[Q:[0-9]+]] = kernel.fused "elementwise" domain [2, 3] stores 1 ins(%[[E]], %[[S]] : tensor<2x3xf64>, tensor<2xf64>) -> (tensor<2x3xf64>) {
// CHECK:           array.div
// CHECK:         func.return %[[Q]] : tensor<2x3xf64>

// A sum of row sums is one reduction over both axes, in one pass over x.
func.func @total(%x: tensor<2x3xf64>) -> tensor<f64> {
  %0 = array.reduce_sum %x {axes = array<i64: 1>} : tensor<2x3xf64> -> tensor<2xf64>
  %1 = array.reduce_sum %0 {axes = array<i64: 0>} : tensor<2xf64> -> tensor<f64>
  func.return %1 : tensor<f64>
}
// CHECK-LABEL: func.func @total
// CHECK-NEXT:    kernel.fused "reduce" domain [2, 3] stores 0
// CHECK-NEXT:    ^{{.*}}(%[[A:[0-9]+]]: tensor<2x3xf64>):
// CHECK-NEXT:      %[[T:[0-9]+]] = array.reduce_sum %[[A]] {axes = array<i64: 0, 1>} : tensor<2x3xf64> -> tensor<f64>
// CHECK-NEXT:      kernel.yield %[[T]] : tensor<f64>

// A matrix product stays an op of the schedule; the transpose of its operand stands
// just before it (the product reads b with a flag, nothing computes the transpose).
func.func @mmt(%a: tensor<2x3xf64>, %b: tensor<4x3xf64>) -> tensor<2x4xf64> {
  %0 = array.transpose %b {permutation = array<i64: 1, 0>} : tensor<4x3xf64> -> tensor<3x4xf64>
  %1 = array.matmul %a, %0 : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
  func.return %1 : tensor<2x4xf64>
}
// CHECK-LABEL: func.func @mmt
// CHECK-SAME:  (%[[A:[a-z0-9]+]]: tensor<2x3xf64>, %[[B:[a-z0-9]+]]: tensor<4x3xf64>)
// CHECK-NOT:     kernel.fused
// CHECK:         %[[BT:[0-9]+]] = array.transpose %[[B]]
// CHECK-NEXT:    %[[C:[0-9]+]] = array.matmul %[[A]], %[[BT]]
// CHECK-NEXT:    func.return %[[C]]

// A scan is a kernel of its own without a domain; sin is computed inside it.
func.func @scan(%x: tensor<4xf64>) -> tensor<4xf64> {
  %0 = array.sin %x : tensor<4xf64>
  %1 = array.cumsum %0 axis = 0 : tensor<4xf64>
  func.return %1 : tensor<4xf64>
}
// CHECK-LABEL: func.func @scan
// CHECK-NEXT:    kernel.fused "scan" stores 0 ins(%{{.*}} : tensor<4xf64>) -> (tensor<4xf64>) {
// CHECK-NEXT:    ^{{.*}}(%[[A:[0-9]+]]: tensor<4xf64>):
// CHECK-NEXT:      %[[S:[0-9]+]] = array.sin %[[A]]
// CHECK-NEXT:      %[[C:[0-9]+]] = array.cumsum %[[S]] axis = 0
// CHECK-NEXT:      kernel.yield %[[C]]

// The marker of the reverse sweep becomes attributes: the function has one, and each
// step lists its results computed before it (here the sum, result 1; the product of
// the reverse part, result 0, is not).
func.func @grad(%x: tensor<3xf64>) -> (tensor<f64>, tensor<3xf64>) {
  %0 = array.sin %x : tensor<3xf64>
  %1 = array.reduce_sum %0 {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
  ad.reverse_begin
  %2 = array.cos %x : tensor<3xf64>
  %3 = array.mul %2, %0 : tensor<3xf64>
  func.return %1, %3 : tensor<f64>, tensor<3xf64>
}
// CHECK-LABEL: func.func @grad
// CHECK-SAME:  attributes {pullback.reverse_sweep}
// CHECK-NOT:     ad.reverse_begin
// CHECK:         kernel.yield
// CHECK-NEXT:    } {pullback.forward = array<i64: 1>}

// Fused IR parses back and fuses to itself: nothing is left to fuse.
// AGAIN-COUNT-5: kernel.fused
// AGAIN-NOT:     kernel.fused
