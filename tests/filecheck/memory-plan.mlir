// RUN: pullback opt %s -p memory-plan | filecheck %s
// RUN: pullback opt %s -p 'memory-plan{alignment=256}' | filecheck %s --check-prefix=ALIGN

// A host function as `bufferize` writes it: one input, one output, three
// temporaries t0 (64 bytes), t1 (128 bytes), t2 (64 bytes), and a chain of four steps
//   step 0: in -> t0,  step 1: t0 -> t1,  step 2: t1 -> t2,  step 3: t2 -> out
// so t0 is live over steps [0, 1], t1 over [1, 2], t2 over [2, 3].
//
// Placement, largest first, each in the smallest free gap among the temporaries live at
// the same time, at multiples of the alignment (64 bytes by default):
//   t1 (128 B): nothing placed yet                          -> offset 0
//   t0 (64 B):  overlaps t1 (step 1), which holds [0, 128)  -> offset 128
//   t2 (64 B):  overlaps t1 (step 2) but not t0             -> offset 128, sharing t0's bytes
// The arena is 128 + 64 = 192 bytes. t0 and t2 share bytes, so both lose `llvm.noalias`;
// t1 keeps it.
func.func private @step(memref<8xf64>, memref<8xf64>)
func.func private @widen(memref<8xf64>, memref<16xf64>)
func.func private @narrow(memref<16xf64>, memref<8xf64>)
func.func @host(%in: memref<8xf64> {llvm.noalias}, %out: memref<8xf64> {llvm.noalias}, %t0: memref<8xf64> {llvm.noalias}, %t1: memref<16xf64> {llvm.noalias}, %t2: memref<8xf64> {llvm.noalias}) attributes {pullback.num_inputs = 1 : i64, pullback.num_outputs = 1 : i64, pullback.temp_bytes = array<i64: 64, 128, 64>} {
  func.call @step(%in, %t0) : (memref<8xf64>, memref<8xf64>) -> ()
  func.call @widen(%t0, %t1) : (memref<8xf64>, memref<16xf64>) -> ()
  func.call @narrow(%t1, %t2) : (memref<16xf64>, memref<8xf64>) -> ()
  func.call @step(%t2, %out) : (memref<8xf64>, memref<8xf64>) -> ()
  func.return
}
// CHECK-LABEL: func.func @host
// CHECK-SAME:  (%in: memref<8xf64> {llvm.noalias}, %out: memref<8xf64> {llvm.noalias}, %t0: memref<8xf64>, %t1: memref<16xf64> {llvm.noalias}, %t2: memref<8xf64>)
// CHECK-SAME:  pullback.arena_bytes = 192 : i64
// CHECK-SAME:  pullback.temp_offsets = array<i64: 128, 0, 128>
// CHECK-NEXT:    func.call @step(%in, %t0)

// With 256-byte alignment every temporary takes a 256-byte slot: t1 at 0, t0 at 256, t2
// sharing t0's slot at 256; the arena ends at 256 + 64 = 320 bytes.
// ALIGN-LABEL: func.func @host
// ALIGN-SAME:  pullback.arena_bytes = 320 : i64
// ALIGN-SAME:  pullback.temp_offsets = array<i64: 256, 0, 256>
