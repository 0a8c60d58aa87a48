// RUN: pullback opt %s -p convert-kernels-to-loops | filecheck %s

// `convert-kernels-to-loops` outlines each buffer-form `kernel.fused` into a private
// kernel function @HOST__kI (numbered in schedule order, placed before the host) and
// calls it with the step's buffers, reads then writes. A buffer passed once is
// `llvm.noalias`; the kernel's `pullback.kernel` is the step's kind.

// An in-place update: w's buffer is both read and written, so neither of its two
// kernel arguments is noalias, and the late store of w - g comes after both loads.
func.func @step(%w: memref<3xf64> {llvm.noalias}, %g: memref<3xf64> {llvm.noalias}) attributes {pullback.num_inputs = 2 : i64, pullback.num_outputs = 0 : i64, pullback.temp_bytes = array<i64>, pullback.temp_kinds = [], pullback.signature = (tensor<3xf64>, tensor<3xf64>) -> (), pullback.written_inputs = array<i64: 0>} {
  kernel.fused "elementwise" domain [3] stores 1 late [0] ins(%w, %g : memref<3xf64>, memref<3xf64>) outs(%w : memref<3xf64>) {
  ^bb0(%a: tensor<3xf64>, %b: tensor<3xf64>):
    %d = array.sub %a, %b : tensor<3xf64>
    kernel.yield %d : tensor<3xf64>
  }
  func.return
}
// CHECK-LABEL: func.func private @step__k0
// CHECK-SAME:  (%[[W:[0-9]+]]: memref<3xf64>, %[[G:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[OUT:[0-9]+]]: memref<3xf64>)
// CHECK-SAME:  attributes {pullback.kernel = "elementwise"}
// CHECK:         %[[A:[0-9]+]] = memref.load %[[W]]
// CHECK-NEXT:    %[[B:[0-9]+]] = memref.load %[[G]]
// CHECK-NEXT:    %[[D:[0-9]+]] = arith.subf %[[A]], %[[B]] : f64
// CHECK-NEXT:    memref.store %[[D]], %[[OUT]]
// CHECK-LABEL: func.func @step
// CHECK-SAME:  (%[[W:[a-z0-9]+]]: memref<3xf64> {llvm.noalias}, %[[G:[a-z0-9]+]]: memref<3xf64> {llvm.noalias})
// CHECK-NEXT:    func.call @step__k0(%[[W]], %[[G]], %[[W]]) : (memref<3xf64>, memref<3xf64>, memref<3xf64>) -> ()
// CHECK-NEXT:    func.return

// Two steps: a reduction (a domain, stores 0) and a scan (no domain), in order.
func.func @two(%x: memref<4xf64> {llvm.noalias}, %s: memref<1xf64> {llvm.noalias}, %c: memref<4xf64> {llvm.noalias}) attributes {pullback.num_inputs = 1 : i64, pullback.num_outputs = 2 : i64, pullback.temp_bytes = array<i64>, pullback.temp_kinds = [], pullback.signature = (tensor<4xf64>) -> (tensor<f64>, tensor<4xf64>), pullback.written_inputs = array<i64>} {
  kernel.fused "reduce" domain [4] stores 0 ins(%x : memref<4xf64>) outs(%s : memref<1xf64>) {
  ^bb0(%a: tensor<4xf64>):
    %t = array.reduce_sum %a {axes = array<i64: 0>} : tensor<4xf64> -> tensor<f64>
    kernel.yield %t : tensor<f64>
  }
  kernel.fused "scan" stores 0 ins(%x : memref<4xf64>) outs(%c : memref<4xf64>) {
  ^bb0(%a: tensor<4xf64>):
    %r = array.cumsum %a axis = 0 : tensor<4xf64>
    kernel.yield %r : tensor<4xf64>
  }
  func.return
}
// CHECK-LABEL: func.func private @two__k0
// CHECK-SAME:  (%{{[0-9]+}}: memref<4xf64> {llvm.noalias}, %{{[0-9]+}}: memref<1xf64> {llvm.noalias})
// CHECK-SAME:  attributes {pullback.kernel = "reduce"}
// CHECK:         arith.addf
// CHECK-LABEL: func.func private @two__k1
// CHECK-SAME:  (%{{[0-9]+}}: memref<4xf64> {llvm.noalias}, %{{[0-9]+}}: memref<4xf64> {llvm.noalias})
// CHECK-SAME:  attributes {pullback.kernel = "scan"}
// CHECK:         scf.for
// CHECK-LABEL: func.func @two
// CHECK-SAME:  (%[[X:[a-z0-9]+]]: memref<4xf64> {llvm.noalias}, %[[S:[a-z0-9]+]]: memref<1xf64> {llvm.noalias}, %[[C:[a-z0-9]+]]: memref<4xf64> {llvm.noalias})
// CHECK-NEXT:    func.call @two__k0(%[[X]], %[[S]])
// CHECK-NEXT:    func.call @two__k1(%[[X]], %[[C]])
// CHECK-NEXT:    func.return
// CHECK-NOT:     kernel.fused
