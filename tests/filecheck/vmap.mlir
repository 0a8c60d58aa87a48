// RUN: pullback opt %s -p 'vmap{func=exp args=0 size=4}' | filecheck %s --check-prefix=EXP
// RUN: pullback opt %s -p 'vmap{func=affine args=0 size=4}' | filecheck %s --check-prefix=SHARED
// RUN: pullback opt %s -p 'vmap{func=affine args=0 size=4 broadcast=false}' | filecheck %s --check-prefix=NOBCAST
// RUN: pullback opt %s -p 'vmap{func=matmul args=0 size=5}' | filecheck %s --check-prefix=LHS
// RUN: pullback opt %s -p 'vmap{func=matmul args=1 size=5}' | filecheck %s --check-prefix=RHS

// `vmap` adds @F_vmap: the arguments in `args` gain a leading batch dimension of `size`;
// a value computed from them gains it too, every other value is computed once, unbatched.

// An elementwise op of a batched value is the same op on the batched shape.
func.func @exp(%x: tensor<3xf64>) -> tensor<3xf64> {
  %0 = array.exp %x : tensor<3xf64>
  func.return %0 : tensor<3xf64>
}
// EXP-LABEL: func.func @exp_vmap
// EXP-SAME:  (%[[X:[0-9]+]]: tensor<4x3xf64>) -> tensor<4x3xf64>
// EXP-SAME:  pullback.derivative = "vmap", pullback.batched_args = array<i64: 0>, pullback.batched_results = array<i64: 0>, pullback.batch_size = 4 : i64
// EXP-NEXT:    %[[E:[0-9]+]] = array.exp %[[X]] : tensor<4x3xf64>
// EXP-NEXT:    func.return %[[E]] : tensor<4x3xf64>

// sin(w) does not depend on the batched x: it is computed once on tensor<3xf64>, then
// broadcast where it meets a batched value. The second result, unbatched, is broadcast to
// the batch by default ...
func.func @affine(%x: tensor<3xf64>, %w: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %0 = array.sin %w : tensor<3xf64>
  %1 = array.mul %x, %0 : tensor<3xf64>
  func.return %1, %0 : tensor<3xf64>, tensor<3xf64>
}
// SHARED-LABEL: func.func @affine_vmap
// SHARED-SAME:  (%[[X:[0-9]+]]: tensor<4x3xf64>, %[[W:[0-9]+]]: tensor<3xf64>) -> (tensor<4x3xf64>, tensor<4x3xf64>)
// SHARED-SAME:  pullback.batched_results = array<i64: 0, 1>
// SHARED-NEXT:    %[[S:[0-9]+]] = array.sin %[[W]] : tensor<3xf64>
// SHARED-NEXT:    %[[SB:[0-9]+]] = array.broadcast %[[S]] : tensor<3xf64> -> tensor<4x3xf64>
// SHARED-NEXT:    %[[M:[0-9]+]] = array.mul %[[X]], %[[SB]] : tensor<4x3xf64>
// SHARED-NEXT:    %[[R:[0-9]+]] = array.broadcast %[[S]] : tensor<3xf64> -> tensor<4x3xf64>
// SHARED-NEXT:    func.return %[[M]], %[[R]] : tensor<4x3xf64>, tensor<4x3xf64>

// ... and keeps its own shape with broadcast=false (`batched_results` lists only result 0).
// NOBCAST-LABEL: func.func @affine_vmap
// NOBCAST-SAME:  (%[[X:[0-9]+]]: tensor<4x3xf64>, %[[W:[0-9]+]]: tensor<3xf64>) -> (tensor<4x3xf64>, tensor<3xf64>)
// NOBCAST-SAME:  pullback.batched_results = array<i64: 0>
// NOBCAST-NEXT:    %[[S:[0-9]+]] = array.sin %[[W]] : tensor<3xf64>
// NOBCAST:         func.return %{{[0-9]+}}, %[[S]] : tensor<4x3xf64>, tensor<3xf64>

// A batch of left operands against one right operand is one product of (5*2)x3 by 3x4:
// the batch is folded into the rows, and the shared operand is not copied per element.
func.func @matmul(%a: tensor<2x3xf64>, %b: tensor<3x4xf64>) -> tensor<2x4xf64> {
  %0 = array.matmul %a, %b : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
  func.return %0 : tensor<2x4xf64>
}
// LHS-LABEL: func.func @matmul_vmap
// LHS-SAME:  (%[[A:[0-9]+]]: tensor<5x2x3xf64>, %[[B:[0-9]+]]: tensor<3x4xf64>) -> tensor<5x2x4xf64>
// LHS-NEXT:    %[[A2:[0-9]+]] = array.reshape %[[A]] : tensor<5x2x3xf64> -> tensor<10x3xf64>
// LHS-NEXT:    %[[P:[0-9]+]] = array.matmul %[[A2]], %[[B]] : tensor<10x3xf64>, tensor<3x4xf64> -> tensor<10x4xf64>
// LHS-NEXT:    %[[R:[0-9]+]] = array.reshape %[[P]] : tensor<10x4xf64> -> tensor<5x2x4xf64>
// LHS-NEXT:    func.return %[[R]] : tensor<5x2x4xf64>

// A batch of right operands: the batch is folded into the columns (3x5x4 -> 3x20), one
// 2x3 by 3x20 product, and the columns unfolded back to 5x2x4.
// RHS-LABEL: func.func @matmul_vmap
// RHS-SAME:  (%[[A:[0-9]+]]: tensor<2x3xf64>, %[[B:[0-9]+]]: tensor<5x3x4xf64>) -> tensor<5x2x4xf64>
// RHS-NEXT:    %[[BT:[0-9]+]] = array.transpose %[[B]] {permutation = array<i64: 1, 0, 2>} : tensor<5x3x4xf64> -> tensor<3x5x4xf64>
// RHS-NEXT:    %[[B2:[0-9]+]] = array.reshape %[[BT]] : tensor<3x5x4xf64> -> tensor<3x20xf64>
// RHS-NEXT:    %[[P:[0-9]+]] = array.matmul %[[A]], %[[B2]] : tensor<2x3xf64>, tensor<3x20xf64> -> tensor<2x20xf64>
// RHS-NEXT:    %[[P3:[0-9]+]] = array.reshape %[[P]] : tensor<2x20xf64> -> tensor<2x5x4xf64>
// RHS-NEXT:    %[[R:[0-9]+]] = array.transpose %[[P3]] {permutation = array<i64: 1, 0, 2>} : tensor<2x5x4xf64> -> tensor<5x2x4xf64>
// RHS-NEXT:    func.return %[[R]] : tensor<5x2x4xf64>
