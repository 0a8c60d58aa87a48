// RUN: pullback opt %s -p convert-array-to-loops | filecheck %s
// RUN: pullback opt %s -p 'convert-array-to-loops{function=add}' | filecheck %s --check-prefix=ONE

// `convert-array-to-loops` runs inline-checkpoints, drop-eager-updates, drop-identities,
// schedule-writes, fuse, bufferize and convert-kernels-to-loops. Each array function
// becomes a host function over flat row-major memrefs in destination-passing style
// (inputs, outputs, temporaries; no results) that calls one kernel per fused group,
// each kernel a loop nest of loads, scalar ops and stores. Declarations of the
// target's functions come first, then the kernels, then the host function.

// Elementwise: one kernel, one parallel loop over the 3 elements; no temporary.
func.func @add(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.add %x, %y : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// CHECK-LABEL: func.func private @add__k0
// CHECK-SAME:  (%[[X:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[Y:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[OUT:[0-9]+]]: memref<3xf64> {llvm.noalias})
// CHECK-SAME:  pullback.kernel = "elementwise"
// CHECK-DAG:     %[[C0:[0-9]+]] = arith.constant 0 : index
// CHECK-DAG:     %[[C1:[0-9]+]] = arith.constant 1 : index
// CHECK-DAG:     %[[C3:[0-9]+]] = arith.constant 3 : index
// CHECK:         "scf.parallel"(%[[C0]], %[[C3]], %[[C1]]) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
// CHECK-NEXT:    ^{{bb[0-9]+}}(%[[I:[0-9]+]]: index):
// CHECK-NEXT:      %[[A:[0-9]+]] = memref.load %[[X]][%[[I]]] : memref<3xf64>
// CHECK-NEXT:      %[[B:[0-9]+]] = memref.load %[[Y]][%[[I]]] : memref<3xf64>
// CHECK-NEXT:      %[[S:[0-9]+]] = arith.addf %[[A]], %[[B]] : f64
// CHECK-NEXT:      memref.store %[[S]], %[[OUT]][%[[I]]] : memref<3xf64>
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) : (index, index, index) -> ()
// CHECK-LABEL: func.func @add
// CHECK-SAME:  (%[[X:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[Y:[0-9]+]]: memref<3xf64> {llvm.noalias}, %[[OUT:[0-9]+]]: memref<3xf64> {llvm.noalias})
// CHECK-SAME:  pullback.num_inputs = 2 : i64, pullback.num_outputs = 1 : i64, pullback.temp_bytes = array<i64>
// CHECK-SAME:  pullback.signature = (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64>
// CHECK-NEXT:    func.call @add__k0(%[[X]], %[[Y]], %[[OUT]])
// CHECK-NEXT:    func.return

// exp fused into a sum over the last axis: one kernel, no temporary; an `scf.parallel`
// over the 2 rows holds a reducing `scf.parallel` over the 3 columns, which starts from
// the identity 0 of `add` and ends in an `scf.reduce` whose region holds the combiner;
// the sum is stored when it closes. Element (i, j) of the flat input is at i*3 + j.
func.func @rowsum(%x: tensor<2x3xf64>) -> tensor<2xf64> {
  %0 = array.exp %x : tensor<2x3xf64>
  %1 = array.reduce_sum %0 {axes = array<i64: 1>} : tensor<2x3xf64> -> tensor<2xf64>
  func.return %1 : tensor<2xf64>
}
// CHECK-LABEL: func.func private @rowsum__k0
// CHECK-SAME:  (%[[X:[0-9]+]]: memref<6xf64> {llvm.noalias}, %[[OUT:[0-9]+]]: memref<2xf64> {llvm.noalias})
// CHECK-SAME:  pullback.kernel = "reduce"
// CHECK-DAG:     %[[C0:[0-9]+]] = arith.constant 0 : index
// CHECK-DAG:     %[[C1:[0-9]+]] = arith.constant 1 : index
// CHECK-DAG:     %[[C2:[0-9]+]] = arith.constant 2 : index
// CHECK-DAG:     %[[C3:[0-9]+]] = arith.constant 3 : index
// CHECK-DAG:     %[[ZERO:[0-9]+]] = arith.constant 0.000000e+00 : f64
// CHECK:         "scf.parallel"(%[[C0]], %[[C2]], %[[C1]]) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
// CHECK-NEXT:    ^{{bb[0-9]+}}(%[[I:[0-9]+]]: index):
// CHECK-NEXT:      %[[SUM:[0-9]+]] = "scf.parallel"(%[[C0]], %[[C3]], %[[C1]], %[[ZERO]]) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
// CHECK-NEXT:      ^{{bb[0-9]+}}(%[[J:[0-9]+]]: index):
// CHECK-NEXT:        %[[ROW:[0-9]+]] = arith.muli %[[I]], %[[C3]] : index
// CHECK-NEXT:        %[[K:[0-9]+]] = arith.addi %[[J]], %[[ROW]] : index
// CHECK-NEXT:        %[[V:[0-9]+]] = memref.load %[[X]][%[[K]]] : memref<6xf64>
// CHECK-NEXT:        %[[E:[0-9]+]] = math.exp %[[V]] : f64
// CHECK-NEXT:        scf.reduce(%[[E]] : f64) {
// CHECK-NEXT:        ^{{bb[0-9]+}}(%[[P:[0-9]+]]: f64, %[[Q:[0-9]+]]: f64):
// CHECK-NEXT:          %[[PQ:[0-9]+]] = arith.addf %[[P]], %[[Q]] fastmath<reassoc,contract> : f64
// CHECK-NEXT:          scf.reduce.return %[[PQ]] : f64
// CHECK-NEXT:        }
// CHECK-NEXT:      }) : (index, index, index, f64) -> f64
// CHECK-NEXT:      memref.store %[[SUM]], %[[OUT]][%[[I]]] : memref<2xf64>
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) : (index, index, index) -> ()
// CHECK-LABEL: func.func @rowsum
// CHECK-SAME:  pullback.num_inputs = 1 : i64, pullback.num_outputs = 1 : i64, pullback.temp_bytes = array<i64>
// CHECK-NEXT:    func.call @rowsum__k0

// A matrix product is a call of the target's @pullback_matmul_f64(a, b, c, batch, m, n, k,
// trans_a, trans_b) on buffers cast to memref<?xf64>: batch 1, m 2, n 4, k 3, no transposes.
// Its operand exp(a) must exist in memory: a kernel writes it into a 48-byte temporary
// (2 * 3 f64), the host function's last argument.
func.func @expmm(%a: tensor<2x3xf64>, %b: tensor<3x4xf64>) -> tensor<2x4xf64> {
  %0 = array.exp %a : tensor<2x3xf64>
  %1 = array.matmul %0, %b : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
  func.return %1 : tensor<2x4xf64>
}
// CHECK:       func.func private @pullback_matmul_f64(memref<?xf64>, memref<?xf64>, memref<?xf64>, i64, i64, i64, i64, i64, i64) -> ()
// CHECK-LABEL: func.func private @expmm__k0
// CHECK-SAME:  (%[[A:[0-9]+]]: memref<6xf64> {llvm.noalias}, %[[T:[0-9]+]]: memref<6xf64> {llvm.noalias})
// CHECK:           math.exp
// CHECK-LABEL: func.func @expmm
// CHECK-SAME:  (%[[A:[0-9]+]]: memref<6xf64> {llvm.noalias}, %[[B:[0-9]+]]: memref<12xf64> {llvm.noalias}, %[[C:[0-9]+]]: memref<8xf64> {llvm.noalias}, %[[T:[0-9]+]]: memref<6xf64> {llvm.noalias})
// CHECK-SAME:  pullback.num_inputs = 2 : i64, pullback.num_outputs = 1 : i64, pullback.temp_bytes = array<i64: 48>
// CHECK-DAG:     %[[I0:[0-9]+]] = arith.constant 0 : i64
// CHECK-DAG:     %[[I1:[0-9]+]] = arith.constant 1 : i64
// CHECK-DAG:     %[[I2:[0-9]+]] = arith.constant 2 : i64
// CHECK-DAG:     %[[I3:[0-9]+]] = arith.constant 3 : i64
// CHECK-DAG:     %[[I4:[0-9]+]] = arith.constant 4 : i64
// CHECK:         func.call @expmm__k0(%[[A]], %[[T]])
// CHECK-DAG:     %[[TD:[0-9]+]] = "memref.cast"(%[[T]]) : (memref<6xf64>) -> memref<?xf64>
// CHECK-DAG:     %[[BD:[0-9]+]] = "memref.cast"(%[[B]]) : (memref<12xf64>) -> memref<?xf64>
// CHECK-DAG:     %[[CD:[0-9]+]] = "memref.cast"(%[[C]]) : (memref<8xf64>) -> memref<?xf64>
// CHECK:         func.call @pullback_matmul_f64(%[[TD]], %[[BD]], %[[CD]], %[[I1]], %[[I2]], %[[I4]], %[[I3]], %[[I0]], %[[I0]])

// `function` lowers only @add and drops the other functions.
// ONE-NOT:     @rowsum
// ONE-NOT:     @expmm
// ONE:         func.func private @add__k0
// ONE:         func.func @add
// ONE-NOT:     @rowsum
// ONE-NOT:     @expmm
