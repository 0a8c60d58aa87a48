// RUN: pullback opt %s -p fuse,bufferize | filecheck %s

// `bufferize` turns each fused array function into a host function over flat buffers:
// inputs, outputs, then temporaries, with no results. Each `kernel.fused` reads and
// writes buffers (`ins`/`outs`); its region is unchanged.

// An optimiser step: w - 0.1 g is written straight into w's buffer (no temporary, no
// copy). The kernel reads w at the element it writes, so that store is `late` (after
// every load of the iteration); the host records input 0 as written.
func.func @step(%w: tensor<3xf64>, %g: tensor<3xf64>) {
  %0 = array.full 1.000000e-01 : f64 : tensor<3xf64>
  %1 = array.mul %0, %g : tensor<3xf64>
  %2 = array.sub %w, %1 : tensor<3xf64>
  array.assign %w, %2 : tensor<3xf64>
  func.return
}
// CHECK-LABEL: func.func @step
// CHECK-SAME:  (%[[W:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[G:[0-9]+]]: memref<3xf64> {llvm.noalias})
// CHECK-SAME:  pullback.num_inputs = 2 : i64, pullback.num_outputs = 0 : i64, pullback.temp_bytes = array<i64>
// CHECK-SAME:  pullback.written_inputs = array<i64: 0>
// CHECK-NEXT:    kernel.fused "elementwise" domain [3] stores 1 late [0] ins(%[[W]], %[[G]] : memref<3xf64>, memref<3xf64>) outs(%[[W]] : memref<3xf64>) {
// CHECK:           array.sub
// CHECK:         func.return
// CHECK-NOT:     array.assign

// tanh(x) is stored before the marker and read after it: its 32-byte temporary is a
// residual. The product reads the temporary through a cast, with no transpose flags.
func.func @grad(%x: tensor<2x2xf64>) -> (tensor<2x2xf64>, tensor<2x2xf64>) {
  %0 = array.tanh %x : tensor<2x2xf64>
  %1 = array.matmul %0, %0 : tensor<2x2xf64>, tensor<2x2xf64> -> tensor<2x2xf64>
  ad.reverse_begin
  %2 = array.mul %0, %1 : tensor<2x2xf64>
  func.return %1, %2 : tensor<2x2xf64>, tensor<2x2xf64>
}
// CHECK:       func.func private @pullback_matmul_f64(memref<?xf64>, memref<?xf64>, memref<?xf64>, i64, i64, i64, i64, i64, i64) -> ()
// CHECK-LABEL: func.func @grad
// CHECK-SAME:  (%[[X:[0-9]+]]: memref<4xf64> {llvm.noalias}, %[[P:[0-9]+]]: memref<4xf64> {llvm.noalias}, %[[Q:[0-9]+]]: memref<4xf64> {llvm.noalias}, %[[T:[0-9]+]]: memref<4xf64> {llvm.noalias})
// CHECK-SAME:  pullback.temp_bytes = array<i64: 32>, pullback.temp_kinds = ["residual"]
// CHECK-DAG:     %[[I0:[0-9]+]] = arith.constant 0 : i64
// CHECK-DAG:     %[[I1:[0-9]+]] = arith.constant 1 : i64
// CHECK-DAG:     %[[I2:[0-9]+]] = arith.constant 2 : i64
// CHECK:         kernel.fused "elementwise" domain [2, 2] stores 1 ins(%[[X]] : memref<4xf64>) outs(%[[T]] : memref<4xf64>)
// CHECK:           array.tanh
// CHECK:         %[[TA:[0-9]+]] = "memref.cast"(%[[T]]) : (memref<4xf64>) -> memref<?xf64>
// CHECK-NEXT:    %[[TB:[0-9]+]] = "memref.cast"(%[[T]]) : (memref<4xf64>) -> memref<?xf64>
// CHECK-NEXT:    %[[PC:[0-9]+]] = "memref.cast"(%[[P]]) : (memref<4xf64>) -> memref<?xf64>
// CHECK-NEXT:    func.call @pullback_matmul_f64(%[[TA]], %[[TB]], %[[PC]], %[[I1]], %[[I2]], %[[I2]], %[[I2]], %[[I0]], %[[I0]])
// CHECK-NEXT:    kernel.fused "elementwise" domain [2, 2] stores 1 ins(%[[T]], %[[P]] : memref<4xf64>, memref<4xf64>) outs(%[[Q]] : memref<4xf64>)
// CHECK:           array.mul

// A result that is an argument is copied into its output buffer by a "copy" kernel
// after the other steps.
func.func @pass(%x: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %0 = array.neg %x : tensor<3xf64>
  func.return %x, %0 : tensor<3xf64>, tensor<3xf64>
}
// CHECK-LABEL: func.func @pass
// CHECK-SAME:  (%[[X:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[R0:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[R1:[0-9]+]]: memref<3xf64> {llvm.noalias})
// CHECK-NEXT:    kernel.fused "elementwise" domain [3] stores 1 ins(%[[X]] : memref<3xf64>) outs(%[[R1]] : memref<3xf64>)
// CHECK:         kernel.fused "copy" domain [3] stores 1 ins(%[[X]] : memref<3xf64>) outs(%[[R0]] : memref<3xf64>) {
// CHECK-NEXT:    ^{{.*}}(%[[A:[0-9]+]]: tensor<3xf64>):
// CHECK-NEXT:      kernel.yield %[[A]] : tensor<3xf64>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
