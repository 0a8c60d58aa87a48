// RUN: pullback opt %s -p schedule-writes | filecheck %s

// `schedule-writes` moves the ops that only compute an `array.assign`'s value (with their
// group) to just after the last of: the definitions of the values they read, and the ops
// that read the old value of the assigned argument (directly or through fusible ops).
// The assign itself stays where it was; the other ops keep their relative order.

// The update w + (-g) reads only arguments, so it moves to the top, ahead of the
// unrelated exp/sin chain.
func.func @early(%w: tensor<3xf64>, %g: tensor<3xf64>, %x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.exp %x : tensor<3xf64>
  %1 = array.sin %0 : tensor<3xf64>
  %2 = array.neg %g : tensor<3xf64>
  %3 = array.add %w, %2 : tensor<3xf64>
  array.assign %w, %3 : tensor<3xf64>
  func.return %1 : tensor<3xf64>
}
// CHECK-LABEL: func.func @early
// CHECK-NEXT:    %[[N:[0-9]+]] = array.neg %g : tensor<3xf64>
// CHECK-NEXT:    %[[NEW:[0-9]+]] = array.add %w, %[[N]] : tensor<3xf64>
// CHECK-NEXT:    %[[E:[0-9]+]] = array.exp %x : tensor<3xf64>
// CHECK-NEXT:    %[[S:[0-9]+]] = array.sin %[[E]] : tensor<3xf64>
// CHECK-NEXT:    array.assign %w, %[[NEW]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[S]] : tensor<3xf64>

// w * x reads the old w, and exp and sin are fusible consumers that a later kernel may
// compute it in: the update must wait for all three, so nothing moves.
func.func @after_read(%w: tensor<3xf64>, %g: tensor<3xf64>, %x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.mul %w, %x : tensor<3xf64>
  %1 = array.exp %0 : tensor<3xf64>
  %2 = array.sin %1 : tensor<3xf64>
  %3 = array.neg %g : tensor<3xf64>
  %4 = array.add %w, %3 : tensor<3xf64>
  array.assign %w, %4 : tensor<3xf64>
  func.return %2 : tensor<3xf64>
}
// CHECK-LABEL: func.func @after_read
// CHECK-NEXT:    %[[M:[0-9]+]] = array.mul %w, %x : tensor<3xf64>
// CHECK-NEXT:    %[[E:[0-9]+]] = array.exp %[[M]] : tensor<3xf64>
// CHECK-NEXT:    %[[S:[0-9]+]] = array.sin %[[E]] : tensor<3xf64>
// CHECK-NEXT:    %[[N:[0-9]+]] = array.neg %g : tensor<3xf64>
// CHECK-NEXT:    %[[NEW:[0-9]+]] = array.add %w, %[[N]] : tensor<3xf64>
// CHECK-NEXT:    array.assign %w, %[[NEW]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[S]] : tensor<3xf64>

// The update reads log(exp(x)): it moves to just after that definition, ahead of sin(x).
func.func @after_operand(%w: tensor<3xf64>, %x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.exp %x : tensor<3xf64>
  %1 = array.log %0 : tensor<3xf64>
  %2 = array.sin %x : tensor<3xf64>
  %3 = array.neg %1 : tensor<3xf64>
  %4 = array.add %w, %3 : tensor<3xf64>
  array.assign %w, %4 : tensor<3xf64>
  func.return %2 : tensor<3xf64>
}
// CHECK-LABEL: func.func @after_operand
// CHECK-NEXT:    %[[E:[0-9]+]] = array.exp %x : tensor<3xf64>
// CHECK-NEXT:    %[[L:[0-9]+]] = array.log %[[E]] : tensor<3xf64>
// CHECK-NEXT:    %[[N:[0-9]+]] = array.neg %[[L]] : tensor<3xf64>
// CHECK-NEXT:    %[[NEW:[0-9]+]] = array.add %w, %[[N]] : tensor<3xf64>
// CHECK-NEXT:    %[[S:[0-9]+]] = array.sin %x : tensor<3xf64>
// CHECK-NEXT:    array.assign %w, %[[NEW]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[S]] : tensor<3xf64>
