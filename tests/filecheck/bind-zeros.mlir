// RUN: pullback opt %s -p 'bind-zeros{func=jvp args=3}' | filecheck %s
// RUN: pullback opt %s -p 'bind-zeros{func=jvp args=3,2},simplify,dce' | filecheck %s --check-prefix=FOLD
// RUN: not pullback opt %s -p 'bind-zeros{func=jvp args=4}' 2>&1 | filecheck %s --check-prefix=RANGE
// RUN: not pullback opt %s -p 'bind-zeros{func=nope args=0}' 2>&1 | filecheck %s --check-prefix=MISSING

// A forward derivative of x * w: arguments (x, w, tx, tw). Binding tw (argument 3) to
// zero leaves @jvp(x, w, tx): tw's uses read an `array.full 0` marked as an AD zero
// (it keeps the argument's name), placed first in the body; the function type loses the
// input; nothing else changes.
func.func @jvp(%x: tensor<3xf64>, %w: tensor<3xf64>, %tx: tensor<3xf64>, %tw: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %y = array.mul %x, %w : tensor<3xf64>
  %a = array.mul %tx, %w : tensor<3xf64>
  %b = array.mul %x, %tw : tensor<3xf64>
  %t = array.add %a, %b : tensor<3xf64>
  func.return %y, %t : tensor<3xf64>, tensor<3xf64>
}
// CHECK-LABEL: func.func @jvp
// CHECK-SAME:  (%x: tensor<3xf64>, %w: tensor<3xf64>, %tx: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// CHECK-NEXT:    %tw = array.full 0.000000e+00 : f64 {pullback.zero} : tensor<3xf64>
// CHECK-NEXT:    %y = array.mul %x, %w
// CHECK-NEXT:    %a = array.mul %tx, %w
// CHECK-NEXT:    %b = array.mul %x, %tw
// CHECK-NEXT:    %t = array.add %a, %b
// CHECK-NEXT:    func.return %y, %t

// Binding tx and tw (in any order) makes both products AD zeros: `simplify` folds them
// and their sum, and the tangent result is one zero.
// FOLD-LABEL: func.func @jvp
// FOLD-SAME:  (%x: tensor<3xf64>, %w: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>)
// FOLD-NEXT:    %y = array.mul %x, %w
// FOLD-NEXT:    %[[Z:.+]] = array.full 0.000000e+00 : f64 {pullback.zero} : tensor<3xf64>
// FOLD-NEXT:    func.return %y, %[[Z]]

// RANGE: bind-zeros: @jvp has arguments 0..3; args must be distinct indices among them, got [4]
// MISSING: bind-zeros: no function @nope; functions in the module: @jvp
