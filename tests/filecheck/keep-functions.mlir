// RUN: pullback opt %s -p 'keep-functions{names=g}' | filecheck %s
// RUN: pullback opt %s -p 'keep-functions{names=h,f}' | filecheck %s --check-prefix=TWO
// RUN: not pullback opt %s -p 'keep-functions{names=g,nope}' 2>&1 | filecheck %s --check-prefix=MISSING

// Three functions; keeping @g erases @f and @h.
func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.sin %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
func.func @g(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.cos %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
func.func @h(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.exp %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK:      builtin.module {
// CHECK-NEXT:   func.func @g(%x: tensor<3xf64>) -> tensor<3xf64> {
// CHECK-NEXT:     %0 = array.cos %x : tensor<3xf64>
// CHECK-NEXT:     func.return %0 : tensor<3xf64>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// Kept functions stay in their order in the module, whatever the order of `names`.
// TWO:     func.func @f
// TWO-NOT: func.func @g
// TWO:     func.func @h

// MISSING: keep-functions: names must list functions of the module (f, g, h); missing: nope
