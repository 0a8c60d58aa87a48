// RUN: pullback opt %s -p 'keep-results{func=f results=2,0}' | filecheck %s
// RUN: pullback opt %s -p 'keep-results{func=f results=-1},dce' | filecheck %s --check-prefix=LAST
// RUN: not pullback opt %s -p 'keep-results{func=f results=3}' 2>&1 | filecheck %s --check-prefix=RANGE

// @f returns (sin x, cos x, x * x). Keeping results 2 and 0 makes it return (x * x, sin x)
// in that order; the op computing cos x stays until `dce` removes it.
func.func @f(%x: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>, tensor<3xf64>) {
  %s = array.sin %x : tensor<3xf64>
  %c = array.cos %x : tensor<3xf64>
  %m = array.mul %x, %x : tensor<3xf64>
  func.return %s, %c, %m : tensor<3xf64>, tensor<3xf64>, tensor<3xf64>
}
// CHECK-LABEL: func.func @f
// CHECK-SAME:  (%x: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK-NEXT:    %s = array.sin %x
// CHECK-NEXT:    %c = array.cos %x
// CHECK-NEXT:    %m = array.mul %x, %x
// CHECK-NEXT:    func.return %m, %s : tensor<3xf64>, tensor<3xf64>

// A negative index counts from the end: -1 is x * x; `dce` then drops sin and cos.
// LAST-LABEL: func.func @f
// LAST-SAME:  (%x: tensor<3xf64>) -> tensor<3xf64>
// LAST-NEXT:    %m = array.mul %x, %x
// LAST-NEXT:    func.return %m : tensor<3xf64>

// RANGE: keep-results: @f has 3 results (indices 0..2, or -3..-1 from the end); results must be among them, got [3]
