// RUN: pullback opt %s -p expand-math | filecheck %s

// `expand-math` replaces math.exp/expm1/tanh/log/log1p on f64 and f32 scalars by
// straight-line arith code (no branches) that LLVM can vectorize; other ops stay.

// exp: k = round(x / ln 2) by adding and subtracting 1.5 * 2^52 (bit pattern
// 0x4338000000000000), whose bits then hold k as an integer (read with a bitcast).
func.func @exp(%x: f64) -> f64 {
  %0 = math.exp %x : f64
  func.return %0 : f64
}
// CHECK-LABEL: func.func @exp
// CHECK-NOT:     math.exp
// CHECK-DAG:     arith.constant 0x4338000000000000 : f64
// CHECK-DAG:     arith.constant 1.4426950408889634 : f64
// CHECK:         arith.bitcast %{{[0-9]+}} : f64 to i64
// CHECK-NOT:     math.exp
// CHECK-NOT:     scf.
// CHECK-NOT:     cf.
// CHECK:         func.return %{{[0-9]+}} : f64

// An f32 op is extended to f64, expanded, and rounded back once.
func.func @tanh_f32(%x: f32) -> f32 {
  %0 = math.tanh %x : f32
  func.return %0 : f32
}
// CHECK-LABEL: func.func @tanh_f32
// CHECK-NEXT:    %[[W:[0-9]+]] = arith.extf %x : f32 to f64
// CHECK-NOT:     math.tanh
// CHECK:         %[[R:[0-9]+]] = arith.truncf %{{[0-9]+}} : f64 to f32
// CHECK-NEXT:    func.return %[[R]] : f32

// log: subnormal x (below the smallest normal 2.2250738585072014e-308) is scaled by 2^54
// (0x4350000000000000) into the normal range, then the exponent is read from the bits,
// dividing by 2^52 = 4503599627370496 instead of shifting.
func.func @log(%x: f64) -> f64 {
  %0 = math.log %x : f64
  func.return %0 : f64
}
// CHECK-LABEL: func.func @log
// CHECK-NOT:     math.log
// CHECK-DAG:     arith.constant 2.2250738585072014e-308 : f64
// CHECK-DAG:     arith.constant 0x4350000000000000 : f64
// CHECK:         arith.bitcast %{{[0-9]+}} : f64 to i64
// CHECK:         arith.constant 4503599627370496 : i64
// CHECK-NOT:     math.log

// Ops without an expansion are left alone.
func.func @sin(%x: f64) -> f64 {
  %0 = math.sin %x : f64
  func.return %0 : f64
}
// CHECK-LABEL: func.func @sin
// CHECK-NEXT:    %[[S:[0-9]+]] = math.sin %x : f64
// CHECK-NEXT:    func.return %[[S]] : f64
