// RUN: pullback opt %s -p simplify | filecheck %s

// `simplify` rewrites algebraic no-ops of `array` code, exactly for every input (NaN and
// inf included), except that a structural zero made by AD (`pullback.zero`) absorbs
// products.

// x + 0 -> x, for every zero (it differs only in the sign of a zero).
func.func @add_zero(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.full 0.0 : f64 : tensor<3xf64>
  %1 = array.add %x, %0 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @add_zero
// CHECK-NOT:     array.add
// CHECK:         func.return %x : tensor<3xf64>

// x * 1 -> x and x / 1 -> x.
func.func @mul_one(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.full 1.0 : f64 : tensor<3xf64>
  %1 = array.mul %x, %0 : tensor<3xf64>
  %2 = array.div %1, %0 : tensor<3xf64>
  func.return %2 : tensor<3xf64>
}
// CHECK-LABEL: func.func @mul_one
// CHECK-NOT:     array.mul
// CHECK-NOT:     array.div
// CHECK:         func.return %x : tensor<3xf64>

// A zero the user wrote is not absorbing: inf * 0 is NaN, so x * 0 stays.
func.func @mul_user_zero(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.full 0.0 : f64 : tensor<3xf64>
  %1 = array.mul %x, %0 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @mul_user_zero
// CHECK:         %[[Z:[0-9]+]] = array.full 0.000000e+00 : f64 : tensor<3xf64>
// CHECK-NEXT:    %[[P:[0-9]+]] = array.mul %x, %[[Z]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[P]] : tensor<3xf64>

// A zero made by AD (a symbolic zero derivative) absorbs the product.
func.func @mul_ad_zero(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.full 0.0 : f64 {pullback.zero} : tensor<3xf64>
  %1 = array.mul %x, %0 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @mul_ad_zero
// CHECK-NOT:     array.mul
// CHECK:         %[[Z:[0-9]+]] = array.full 0.000000e+00 : f64 {pullback.zero} : tensor<3xf64>
// CHECK-NEXT:    func.return %[[Z]] : tensor<3xf64>

// 0 - x -> -x.
func.func @zero_minus(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.full 0.0 : f64 : tensor<3xf64>
  %1 = array.sub %0, %x : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @zero_minus
// CHECK-NOT:     array.sub
// CHECK:         %[[N:[0-9]+]] = array.neg %x : tensor<3xf64>
// CHECK-NEXT:    func.return %[[N]] : tensor<3xf64>

// neg(neg(x)) -> x.
func.func @neg_neg(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.neg %x : tensor<3xf64>
  %1 = array.neg %0 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @neg_neg
// CHECK-NOT:     array.neg
// CHECK:         func.return %x : tensor<3xf64>

// neg(full v) -> full -v.
func.func @neg_full() -> tensor<3xf64> {
  %0 = array.full 2.5 : f64 : tensor<3xf64>
  %1 = array.neg %0 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @neg_full
// CHECK-NOT:     array.neg
// CHECK:         %[[F:[0-9]+]] = array.full -2.500000e+00 : f64 : tensor<3xf64>
// CHECK-NEXT:    func.return %[[F]] : tensor<3xf64>

// reshape(reshape(x)) is one reshape; transpose(transpose(x)) with inverse permutations is x.
func.func @shapes(%x: tensor<2x3xf64>) -> (tensor<2x3xf64>, tensor<3x2xf64>) {
  %0 = array.reshape %x : tensor<2x3xf64> -> tensor<6xf64>
  %1 = array.reshape %0 : tensor<6xf64> -> tensor<3x2xf64>
  %2 = array.transpose %x {permutation = array<i64: 1, 0>} : tensor<2x3xf64> -> tensor<3x2xf64>
  %3 = array.transpose %2 {permutation = array<i64: 1, 0>} : tensor<3x2xf64> -> tensor<2x3xf64>
  func.return %3, %1 : tensor<2x3xf64>, tensor<3x2xf64>
}
// CHECK-LABEL: func.func @shapes
// CHECK-NOT:     array.transpose
// CHECK-NOT:     tensor<6xf64>
// CHECK:         %[[R:[0-9]+]] = array.reshape %x : tensor<2x3xf64> -> tensor<3x2xf64>
// CHECK-NOT:     array.transpose
// CHECK-NEXT:    func.return %x, %[[R]] : tensor<2x3xf64>, tensor<3x2xf64>

// select(c, x, x) -> x.
func.func @select_same(%c: tensor<3xi1>, %x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.select %c, %x, %x : tensor<3xi1>, tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func @select_same
// CHECK-NOT:     array.select
// CHECK:         func.return %x : tensor<3xf64>

// Converting back after an exact widening (f32 -> f64 -> f32) gives the original.
func.func @widen(%x: tensor<3xf32>) -> tensor<3xf32> {
  %0 = array.convert %x : tensor<3xf32> -> tensor<3xf64>
  %1 = array.convert %0 : tensor<3xf64> -> tensor<3xf32>
  func.return %1 : tensor<3xf32>
}
// CHECK-LABEL: func.func @widen
// CHECK-NOT:     array.convert
// CHECK:         func.return %x : tensor<3xf32>
