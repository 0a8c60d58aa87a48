// RUN: pullback opt %s -p 'expand-forward{derivatives=false}' | filecheck %s --check-prefix=VALUE
// RUN: pullback opt %s -p 'expand-forward,simplify,cse,dce' | filecheck %s
// RUN: pullback opt %s -p 'expand-forward' | filecheck %s --check-prefix=NOREGION

// `pb.forwarddiff(lambda v: pb.sin(v) * c, x)`: the region's first operand is x, the
// value it closes over (c) a further operand.
func.func @f(%x: tensor<2xf64>, %c: tensor<2xf64>) -> tensor<2xf64> {
  %y = ad.forward %x (%c) chunk 2 : tensor<2xf64>, (tensor<2xf64>) -> tensor<2xf64> {
  ^bb0(%v: tensor<2xf64>, %w: tensor<2xf64>):
    %s = array.sin %v : tensor<2xf64>
    %m = array.mul %s, %w : tensor<2xf64>
    ad.yield %m : tensor<2xf64>
  }
  func.return %y : tensor<2xf64>
}

// Value only: the region's ops bound to the operands.
// VALUE-LABEL: func.func @f
// VALUE-NEXT:    %s = array.sin %x
// VALUE-NEXT:    %m = array.mul %s, %c
// VALUE-NEXT:    func.return %m

// With the Jacobian: the value from stopped inputs, plus (x - sg(x)) @ J^T, J from one
// forward pass over both tangent directions (rows of the identity), whose tangent is
// cos(x) * c on the diagonal; the add and sg(x) are marked.
// CHECK-LABEL: func.func @f
// CHECK-NEXT:    %[[SX:.*]] = ad.stop_gradient %x {pullback.forwarddiff}
// CHECK-NEXT:    %[[SC:.*]] = ad.stop_gradient %c :
// CHECK-NEXT:    %[[SIN:.*]] = array.sin %[[SX]]
// CHECK-NEXT:    %[[Y:.*]] = array.mul %[[SIN]], %[[SC]]
// CHECK:         %[[EYE:.*]] = array.select
// CHECK-NEXT:    %[[COS:.*]] = array.cos %[[SX]]
// CHECK:         %[[D:.*]] = array.sub %x, %[[SX]]
// CHECK:         array.matmul
// CHECK:         %[[OUT:.*]] = array.add %[[Y]], %{{.*}} {pullback.forwarddiff}
// CHECK-NEXT:    func.return %[[OUT]]

// Chunks of one direction: two forward passes, their rows concatenated.
func.func @g(%x: tensor<2xf64>) -> tensor<f64> {
  %y = ad.forward %x () chunk 1 : tensor<2xf64>, () -> tensor<f64> {
  ^bb0(%v: tensor<2xf64>):
    %p = array.reduce_prod %v {axes = array<i64: 0>} : tensor<2xf64> -> tensor<f64>
    ad.yield %p : tensor<f64>
  }
  func.return %y : tensor<f64>
}
// CHECK-LABEL: func.func @g
// CHECK:         array.concatenate {{.*}} axis = 0 : tensor<1x1xf64>, tensor<1x1xf64> -> tensor<2x1xf64>
// CHECK:         array.add {{.*}} {pullback.forwarddiff}

// NOREGION-NOT: ad.forward
