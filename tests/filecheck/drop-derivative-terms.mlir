// RUN: pullback opt %s -p drop-derivative-terms | filecheck %s
// RUN: pullback opt %s -p drop-derivative-terms,dce | filecheck %s --check-prefix=DCE

// A `pb.forwarddiff` region's value as traced: y + (x - sg(x)) @ J^T, the add marked
// `pullback.forwarddiff` (here J is diagonal, given as its diagonal %j). After every AD pass the marked
// add is replaced by its first operand y; an unmarked add is left alone.
func.func @f(%x: tensor<3xf64>, %j: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
  %sx = ad.stop_gradient %x {pullback.forwarddiff} : tensor<3xf64>
  %y = array.sin %sx : tensor<3xf64>
  %d = array.sub %x, %sx : tensor<3xf64>
  %t = array.mul %j, %d : tensor<3xf64>
  %out = array.add %y, %t {pullback.forwarddiff} : tensor<3xf64>
  %other = array.add %y, %y : tensor<3xf64>
  func.return %out, %other : tensor<3xf64>, tensor<3xf64>
}
// CHECK-LABEL: func.func @f
// CHECK:         %y = array.sin %sx
// CHECK-NOT:     array.add %y, %t
// CHECK:         %other = array.add %y, %y
// CHECK-NEXT:    func.return %y, %other

// The zero term and its product with J are then dead: `dce` removes them.
// DCE-LABEL: func.func @f
// DCE-NEXT:    %sx = ad.stop_gradient %x {pullback.forwarddiff}
// DCE-NEXT:    %y = array.sin %sx
// DCE-NEXT:    %other = array.add %y, %y
// DCE-NEXT:    func.return %y, %other
