// RUN: pullback opt %s -p inline-checkpoints | filecheck %s
// RUN: pullback opt %s -p 'autodiff{seed=true},inline-checkpoints' | filecheck %s --check-prefix=AD

// `inline-checkpoints` inlines each `ad.checkpoint` region in its place: the region's argument
// becomes the op's operand and the op's result the value the region yielded.
func.func @f(%x: tensor<3xf64>) -> tensor<f64> {
  %0 = ad.checkpoint(%x) : (tensor<3xf64>) -> tensor<3xf64> {
  ^bb0(%a: tensor<3xf64>):
    %1 = array.sin %a : tensor<3xf64>
    %2 = array.sin %1 : tensor<3xf64>
    ad.yield %2 : tensor<3xf64>
  }
  %3 = array.reduce_sum %0 {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
  func.return %3 : tensor<f64>
}
// CHECK-NOT:   ad.checkpoint
// CHECK-LABEL: func.func @f
// CHECK-SAME:  (%[[X:[a-z0-9]+]]: tensor<3xf64>) -> tensor<f64>
// CHECK-NEXT:    %[[S1:[0-9]+]] = array.sin %[[X]] : tensor<3xf64>
// CHECK-NEXT:    %[[S2:[0-9]+]] = array.sin %[[S1]] : tensor<3xf64>
// CHECK-NEXT:    %[[R:[0-9]+]] = array.reduce_sum %[[S2]] {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
// CHECK-NEXT:    func.return %[[R]] : tensor<f64>
// CHECK-NOT:   ad.yield

// After `autodiff`, the backward sweep recomputes the region from its operand x instead of
// reading the forward values: sin(x) and sin(sin(x)) again, then the chain rule
// cos(sin x) * cos(x), every recomputed op marked `pullback.recompute` (so `cse` keeps it
// apart from its forward twin). `checkpoint` then leaves no region in either function.
// AD-NOT:      ad.checkpoint
// AD-LABEL:    func.func @f_vjp
// AD-SAME:     (%[[X:[a-z0-9]+]]: tensor<3xf64>) -> (tensor<f64>, tensor<3xf64>)
// AD-NEXT:       %[[F1:[0-9]+]] = array.sin %[[X]] : tensor<3xf64>
// AD-NEXT:       %[[F2:[0-9]+]] = array.sin %[[F1]] : tensor<3xf64>
// AD-NEXT:       %[[R:[0-9]+]] = array.reduce_sum %[[F2]]
// AD-NEXT:       ad.reverse_begin
// AD:            %[[CT:[0-9]+]] = array.broadcast %{{[0-9]+}} : tensor<1xf64> -> tensor<3xf64>
// AD-NEXT:       %[[S1:[0-9]+]] = array.sin %[[X]] {pullback.recompute} : tensor<3xf64>
// AD-NEXT:       %{{[0-9]+}} = array.sin %[[S1]] {pullback.recompute} : tensor<3xf64>
// AD-NEXT:       %[[C1:[0-9]+]] = array.cos %[[S1]] {pullback.recompute} : tensor<3xf64>
// AD-NEXT:       %[[G1:[0-9]+]] = array.mul %[[CT]], %[[C1]] {pullback.recompute} : tensor<3xf64>
// AD-NEXT:       %[[C0:[0-9]+]] = array.cos %[[X]] {pullback.recompute} : tensor<3xf64>
// AD-NEXT:       %[[G:[0-9]+]] = array.mul %[[G1]], %[[C0]] {pullback.recompute} : tensor<3xf64>
// AD-NEXT:       func.return %[[R]], %[[G]] : tensor<f64>, tensor<3xf64>
// AD-NOT:      ad.checkpoint
