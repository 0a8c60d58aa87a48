// RUN: pullback opt %s -p host-call-status | filecheck %s

// Each @pullback_host_call_<T> declaration gains an i32 status result (0: go on) and each
// host function (one with `pullback.num_inputs`) returns an i32: after every host call it
// branches to a block returning the nonzero status at once, so no later step runs; the end
// of the schedule returns 0.
func.func private @pullback_host_call_f64(memref<?xi64>, i64, i64, i64, memref<?xf64>, memref<?xf64>)
func.func private @k0(memref<3xf64>, memref<3xf64>)
func.func @host(%table: memref<1xi64>, %x: memref<3xf64>, %out: memref<3xf64>, %t: memref<3xf64>) attributes {pullback.num_inputs = 2 : i64, pullback.num_outputs = 1 : i64, pullback.temp_bytes = array<i64: 24>} {
  %slot = arith.constant 0 : i64
  %unreached = arith.constant 0 : i64
  %n = arith.constant 3 : i64
  %tab = "memref.cast"(%table) : (memref<1xi64>) -> memref<?xi64>
  %src = "memref.cast"(%x) : (memref<3xf64>) -> memref<?xf64>
  %dst = "memref.cast"(%t) : (memref<3xf64>) -> memref<?xf64>
  func.call @pullback_host_call_f64(%tab, %slot, %unreached, %n, %src, %dst) : (memref<?xi64>, i64, i64, i64, memref<?xf64>, memref<?xf64>) -> ()
  func.call @k0(%t, %out) : (memref<3xf64>, memref<3xf64>) -> ()
  func.return
}
// CHECK:       func.func private @pullback_host_call_f64(memref<?xi64>, i64, i64, i64, memref<?xf64>, memref<?xf64>) -> i32
// Declarations of other functions (kernels) are unchanged.
// CHECK:       func.func private @k0(memref<3xf64>, memref<3xf64>) -> ()
// CHECK-LABEL: func.func @host
// CHECK-SAME:  -> i32 attributes
// CHECK:         %[[ZERO:[0-9]+]] = arith.constant 0 : i32
// CHECK:         %[[S:[0-9]+]] = func.call @pullback_host_call_f64(%tab, %slot, %unreached, %n, %src, %dst) : (memref<?xi64>, i64, i64, i64, memref<?xf64>, memref<?xf64>) -> i32
// CHECK-NEXT:    %[[FAILED:[0-9]+]] = arith.cmpi ne, %[[S]], %[[ZERO]] : i32
// CHECK-NEXT:    cf.cond_br %[[FAILED]], ^[[FAIL:bb[0-9]+]](%[[S]] : i32), ^[[REST:bb[0-9]+]]
// CHECK-NEXT:  ^[[REST]]:
// CHECK-NEXT:    func.call @k0(%t, %out) : (memref<3xf64>, memref<3xf64>) -> ()
// CHECK-NEXT:    func.return %[[ZERO]] : i32
// CHECK-NEXT:  ^[[FAIL]](%[[STATUS:[0-9]+]]: i32):
// CHECK-NEXT:    func.return %[[STATUS]] : i32

// A host function without host calls cannot fail: it returns 0 at the end.
func.func @plain(%x: memref<3xf64>, %out: memref<3xf64>) attributes {pullback.num_inputs = 1 : i64, pullback.num_outputs = 1 : i64, pullback.temp_bytes = array<i64>} {
  func.call @k0(%x, %out) : (memref<3xf64>, memref<3xf64>) -> ()
  func.return
}
// CHECK-LABEL: func.func @plain
// CHECK-SAME:  -> i32 attributes
// CHECK:         %[[ZERO:[0-9]+]] = arith.constant 0 : i32
// CHECK-NEXT:    func.call @k0(%x, %out)
// CHECK-NEXT:    func.return %[[ZERO]] : i32
// CHECK-NOT:     cf.cond_br
