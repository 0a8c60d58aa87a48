// RUN: pullback opt %s -p drop-identities | filecheck %s

// `drop-identities` replaces each `ad.stop_gradient` (and `ad.callback`, `ad.hook`)
// by its operand: after differentiation they are the identity.
func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = ad.stop_gradient %x : tensor<3xf64>
  %1 = array.mul %x, %0 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @f
// CHECK-SAME:  (%[[X:[a-z0-9]+]]: tensor<3xf64>) -> tensor<3xf64>
// CHECK-NOT:     ad.stop_gradient
// CHECK-NEXT:    %[[M:[0-9]+]] = array.mul %[[X]], %[[X]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[M]] : tensor<3xf64>
