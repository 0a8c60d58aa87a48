// RUN: pullback opt %s -p drop-eager-updates | filecheck %s
// RUN: pullback opt %s -p 'autodiff{seed=true},drop-eager-updates' | filecheck %s --check-prefix=AD

// `ad.eager_update` is the identity on its parameter in the forward pass; its region is the
// optimiser step (param, grad) -> new param, here plain descent w - 0.5 * g.
// `drop-eager-updates` replaces the op by its parameter.
func.func @f(%w: tensor<3xf64>, %v: tensor<3xf64>) -> tensor<f64> {
  %0 = ad.eager_update %w() "model" : tensor<3xf64>, () {
  ^bb0(%p: tensor<3xf64>, %g: tensor<3xf64>):
    %1 = array.full 5.000000e-01 : f64 : tensor<3xf64>
    %2 = array.mul %1, %g : tensor<3xf64>
    %3 = array.sub %p, %2 : tensor<3xf64>
    ad.yield %3 : tensor<3xf64>
  }
  %4 = array.mul %0, %v : tensor<3xf64>
  %5 = array.reduce_sum %4 {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
  func.return %5 : tensor<f64>
}
// CHECK-LABEL: func.func @f
// CHECK-SAME:  (%[[W:[a-z0-9]+]]: tensor<3xf64>, %[[V:[a-z0-9]+]]: tensor<3xf64>) -> tensor<f64>
// CHECK-NEXT:    %[[M:[0-9]+]] = array.mul %[[W]], %[[V]] : tensor<3xf64>
// CHECK-NEXT:    %[[R:[0-9]+]] = array.reduce_sum %[[M]]
// CHECK-NEXT:    func.return %[[R]] : tensor<f64>
// CHECK-NOT:   ad.eager_update

// After `autodiff`, the step runs where w's gradient (d/dw sum(w * v) = v) is complete:
// the region inlined on that gradient and its result written to w with `array.assign`.
// w gets no gradient result (`pullback.wrt` lists only v), and no `ad.eager_update` is left.
// AD-LABEL:    func.func @f_vjp
// AD-SAME:     (%[[W:[0-9]+]]: tensor<3xf64>, %[[V:[0-9]+]]: tensor<3xf64>) -> (tensor<f64>, tensor<3xf64>)
// AD-SAME:     pullback.wrt = array<i64: 1>
// AD-NEXT:       %[[M:[0-9]+]] = array.mul %[[W]], %[[V]] : tensor<3xf64>
// AD:            ad.reverse_begin
// AD:            %[[ONES:[0-9]+]] = array.broadcast %{{[0-9]+}} : tensor<1xf64> -> tensor<3xf64>
// AD-NEXT:       %[[GW:[0-9]+]] = array.mul %[[ONES]], %[[V]] : tensor<3xf64>
// AD-NEXT:       %[[GV:[0-9]+]] = array.mul %[[W]], %[[ONES]] : tensor<3xf64>
// AD-NEXT:       %[[LR:[0-9]+]] = array.full 5.000000e-01 : f64 : tensor<3xf64>
// AD-NEXT:       %[[STEP:[0-9]+]] = array.mul %[[LR]], %[[GW]] : tensor<3xf64>
// AD-NEXT:       %[[NEW:[0-9]+]] = array.sub %[[W]], %[[STEP]] : tensor<3xf64>
// AD-NEXT:       array.assign %[[W]], %[[NEW]] : tensor<3xf64>
// AD-NEXT:       func.return %{{[0-9]+}}, %[[GV]] : tensor<f64>, tensor<3xf64>
// AD-NOT:      ad.eager_update
