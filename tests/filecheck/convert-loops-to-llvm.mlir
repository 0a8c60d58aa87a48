// RUN: pullback opt %s -p convert-loops-to-llvm | filecheck %s

// Kernel-level IR (func, scf, memref, arith, math) becomes the llvm dialect: functions are
// llvm.func, memrefs opaque pointers indexed by getelementptr, `index` is i64, scf.for is
// a loop of blocks (header compare, body, increment), and math ops are LLVM intrinsics.
func.func @k(%x: memref<3xf64>, %y: memref<3xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  scf.for %i = %c0 to %c3 step %c1 {
    %a = memref.load %x[%i] : memref<3xf64>
    %b = math.sin %a : f64
    %c = arith.mulf %a, %b : f64
    memref.store %c, %y[%i] : memref<3xf64>
  }
  func.return
}
// CHECK-NOT:   func.func
// CHECK-LABEL: llvm.func @k
// CHECK-SAME:  (%[[X:[a-z0-9_]+]]: !llvm.ptr, %[[Y:[a-z0-9_]+]]: !llvm.ptr)
// CHECK-NEXT:    %[[C0:[a-z0-9_]+]] = llvm.mlir.constant(0) : i64
// CHECK-NEXT:    %[[C1:[a-z0-9_]+]] = llvm.mlir.constant(1) : i64
// CHECK-NEXT:    %[[C3:[a-z0-9_]+]] = llvm.mlir.constant(3) : i64
// CHECK-NEXT:    llvm.br ^[[HEAD:bb[0-9]+]](%[[C0]] : i64)
// CHECK-NEXT:  ^[[HEAD]](%[[I:[a-z0-9_]+]]: i64):
// CHECK-NEXT:    %[[MORE:[a-z0-9_]+]] = llvm.icmp "slt" %[[I]], %[[C3]] : i64
// CHECK-NEXT:    llvm.cond_br %[[MORE]], ^[[BODY:bb[0-9]+]], ^[[EXIT:bb[0-9]+]]
// CHECK-NEXT:  ^[[BODY]]:
// CHECK-NEXT:    %[[PA:[a-z0-9_]+]] = llvm.getelementptr inbounds %[[X]][%[[I]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT:    %[[A:[a-z0-9_]+]] = llvm.load %[[PA]] : !llvm.ptr -> f64
// CHECK-NEXT:    %[[B:[a-z0-9_]+]] = llvm.call_intrinsic "llvm.sin.f64"(%[[A]]) : (f64) -> f64
// CHECK-NEXT:    %[[C:[a-z0-9_]+]] = llvm.fmul %[[A]], %[[B]] : f64
// CHECK-NEXT:    %[[PY:[a-z0-9_]+]] = llvm.getelementptr inbounds %[[Y]][%[[I]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT:    llvm.store %[[C]], %[[PY]] : f64, !llvm.ptr
// CHECK-NEXT:    %[[NEXT:[a-z0-9_]+]] = llvm.add %[[I]], %[[C1]] : i64
// CHECK-NEXT:    llvm.br ^[[HEAD]](%[[NEXT]] : i64)
// CHECK-NEXT:  ^[[EXIT]]:
// CHECK-NEXT:    llvm.return

// A private declaration becomes an llvm.func declaration over pointers; a cast to a
// dynamic memref is the same pointer, and func.call is llvm.call.
func.func private @pullback_matmul_f64(memref<?xf64>, memref<?xf64>, memref<?xf64>, i64, i64, i64, i64, i64, i64)
func.func @host(%a: memref<4xf64>, %b: memref<4xf64>, %c: memref<4xf64>) {
  %one = arith.constant 1 : i64
  %two = arith.constant 2 : i64
  %no = arith.constant 0 : i64
  %0 = "memref.cast"(%a) : (memref<4xf64>) -> memref<?xf64>
  %1 = "memref.cast"(%b) : (memref<4xf64>) -> memref<?xf64>
  %2 = "memref.cast"(%c) : (memref<4xf64>) -> memref<?xf64>
  func.call @pullback_matmul_f64(%0, %1, %2, %one, %two, %two, %two, %no, %no) : (memref<?xf64>, memref<?xf64>, memref<?xf64>, i64, i64, i64, i64, i64, i64) -> ()
  func.return
}
// CHECK:       llvm.func @pullback_matmul_f64(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64, i64, i64, i64)
// CHECK-LABEL: llvm.func @host
// CHECK-SAME:  (%[[A:[a-z0-9_]+]]: !llvm.ptr, %[[B:[a-z0-9_]+]]: !llvm.ptr, %[[C:[a-z0-9_]+]]: !llvm.ptr)
// CHECK-NEXT:    %[[ONE:[a-z0-9_]+]] = llvm.mlir.constant(1) : i64
// CHECK-NEXT:    %[[TWO:[a-z0-9_]+]] = llvm.mlir.constant(2) : i64
// CHECK-NEXT:    %[[NO:[a-z0-9_]+]] = llvm.mlir.constant(0) : i64
// CHECK-NEXT:    llvm.call @pullback_matmul_f64(%[[A]], %[[B]], %[[C]], %[[ONE]], %[[TWO]], %[[TWO]], %[[TWO]], %[[NO]], %[[NO]]) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64, i64, i64, i64) -> ()
// CHECK-NEXT:    llvm.return
// CHECK-NOT:   memref.
// CHECK-NOT:   func.
