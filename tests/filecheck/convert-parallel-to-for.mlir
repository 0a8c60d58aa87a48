// RUN: pullback opt %s -p convert-parallel-to-for | filecheck %s
// RUN: pullback opt %s -p convert-parallel-to-for | filecheck %s --check-prefix=NONE

// Each scf.parallel becomes one scf.for per dimension, outermost first, with the same
// bounds and steps. Its reduced values are carried by every loop of the nest, starting
// from the init values; the innermost body ends with each combiner region inlined on
// (carried value, contribution), fast-math flags kept, and yields the results.

// A 2-d sum: both loops carry the accumulator.
func.func @sum(%x: memref<6xf64>, %out: memref<1xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %zero = arith.constant 0.000000e+00 : f64
  %s = "scf.parallel"(%c0, %c0, %c2, %c3, %c1, %c1, %zero) <{operandSegmentSizes = array<i32: 2, 2, 2, 1>}> ({
  ^bb0(%i: index, %j: index):
    %row = arith.muli %i, %c3 : index
    %k = arith.addi %j, %row : index
    %v = memref.load %x[%k] : memref<6xf64>
    scf.reduce(%v : f64) {
    ^bb0(%a: f64, %b: f64):
      %c = arith.addf %a, %b fastmath<reassoc,contract> : f64
      scf.reduce.return %c : f64
    }
  }) : (index, index, index, index, index, index, f64) -> f64
  memref.store %s, %out[%c0] : memref<1xf64>
  func.return
}
// CHECK-LABEL: func.func @sum
// CHECK:         %s = scf.for %i = %c0 to %c2 step %c1 iter_args(%[[OUTER:[0-9]+]] = %zero) -> (f64) {
// CHECK-NEXT:      %[[ROWSUM:[0-9]+]] = scf.for %j = %c0 to %c3 step %c1 iter_args(%[[ACC:[0-9]+]] = %[[OUTER]]) -> (f64) {
// CHECK-NEXT:        %row = arith.muli %i, %c3 : index
// CHECK-NEXT:        %k = arith.addi %j, %row : index
// CHECK-NEXT:        %v = memref.load %x[%k] : memref<6xf64>
// CHECK-NEXT:        %c = arith.addf %[[ACC]], %v fastmath<reassoc,contract> : f64
// CHECK-NEXT:        scf.yield %c : f64
// CHECK-NEXT:      }
// CHECK-NEXT:      scf.yield %[[ROWSUM]] : f64
// CHECK-NEXT:    }
// CHECK-NEXT:    memref.store %s, %out[%c0] : memref<1xf64>

// Independent iterations reducing nothing: a loop without iter_args.
func.func @double(%x: memref<3xf64>, %y: memref<3xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  "scf.parallel"(%c0, %c3, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %a = memref.load %x[%i] : memref<3xf64>
    %b = arith.addf %a, %a : f64
    memref.store %b, %y[%i] : memref<3xf64>
    scf.reduce
  }) : (index, index, index) -> ()
  func.return
}
// CHECK-LABEL: func.func @double
// CHECK:         scf.for %i = %c0 to %c3 step %c1 {
// CHECK-NEXT:      %a = memref.load %x[%i] : memref<3xf64>
// CHECK-NEXT:      %b = arith.addf %a, %a : f64
// CHECK-NEXT:      memref.store %b, %y[%i] : memref<3xf64>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return

// Two reduced values (an integer sum and maximum) in one loop, each its own region;
// a parallel op nested in another becomes a loop nested in the outer loop.
func.func @rows(%x: memref<12xi64>, %sums: memref<3xi64>, %tops: memref<3xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0 : i64
  %lowest = arith.constant -9223372036854775808 : i64
  "scf.parallel"(%c0, %c3, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %r:2 = "scf.parallel"(%c0, %c4, %c1, %zero, %lowest) <{operandSegmentSizes = array<i32: 1, 1, 1, 2>}> ({
    ^bb1(%j: index):
      %row = arith.muli %i, %c4 : index
      %k = arith.addi %j, %row : index
      %v = memref.load %x[%k] : memref<12xi64>
      scf.reduce(%v, %v : i64, i64) {
      ^bb2(%a: i64, %b: i64):
        %s = arith.addi %a, %b : i64
        scf.reduce.return %s : i64
      } {
      ^bb3(%p: i64, %q: i64):
        %m = arith.maxsi %p, %q : i64
        scf.reduce.return %m : i64
      }
    }) : (index, index, index, i64, i64) -> (i64, i64)
    memref.store %r#0, %sums[%i] : memref<3xi64>
    memref.store %r#1, %tops[%i] : memref<3xi64>
    scf.reduce
  }) : (index, index, index) -> ()
  func.return
}
// CHECK-LABEL: func.func @rows
// CHECK:         scf.for %i = %c0 to %c3 step %c1 {
// CHECK-NEXT:      %r, %r_1 = scf.for %j = %c0 to %c4 step %c1 iter_args(%[[SUM:[0-9]+]] = %zero, %[[TOP:[0-9]+]] = %lowest) -> (i64, i64) {
// CHECK-NEXT:        %row = arith.muli %i, %c4 : index
// CHECK-NEXT:        %k = arith.addi %j, %row : index
// CHECK-NEXT:        %v = memref.load %x[%k] : memref<12xi64>
// CHECK-NEXT:        %s = arith.addi %[[SUM]], %v : i64
// CHECK-NEXT:        %m = arith.maxsi %[[TOP]], %v : i64
// CHECK-NEXT:        scf.yield %s, %m : i64, i64
// CHECK-NEXT:      }
// CHECK-NEXT:      memref.store %r, %sums[%i] : memref<3xi64>
// CHECK-NEXT:      memref.store %r_1, %tops[%i] : memref<3xi64>
// CHECK-NEXT:    }

// No dimension: the body runs once, in place, combined with the init value.
func.func @once(%x: memref<1xf64>, %out: memref<1xf64>) {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0.000000e+00 : f64
  %s = "scf.parallel"(%zero) <{operandSegmentSizes = array<i32: 0, 0, 0, 1>}> ({
    %v = memref.load %x[%c0] : memref<1xf64>
    scf.reduce(%v : f64) {
    ^bb0(%a: f64, %b: f64):
      %c = arith.addf %a, %b : f64
      scf.reduce.return %c : f64
    }
  }) : (f64) -> f64
  memref.store %s, %out[%c0] : memref<1xf64>
  func.return
}
// CHECK-LABEL: func.func @once
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %zero = arith.constant 0.000000e+00 : f64
// CHECK-NEXT:    %v = memref.load %x[%c0] : memref<1xf64>
// CHECK-NEXT:    %c = arith.addf %zero, %v : f64
// CHECK-NEXT:    memref.store %c, %out[%c0] : memref<1xf64>
// CHECK-NEXT:    func.return

// Nothing of the parallel ops is left.
// NONE-NOT:      scf.parallel
// NONE-NOT:      scf.reduce
