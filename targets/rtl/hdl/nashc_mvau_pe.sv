// nashc: the datapath of one processing element (PE) of a hybrid matrix-vector unit.
//
// One PE combines SIMD activations x[s] (A bits) with SIMD weight code words w[s]
// (WB bits) per cycle and adds the SIMD lane results to its accumulator:
//
//   KIND 0 (shift): w = {sign, code}; code > KMAX is the zero code, else the lane is
//                   (sign ? -1 : 1) * (x << code)
//   KIND 1 (adder): w is a WB-bit integer (SIGNED_W); the lane is -|x - w|
//   KIND 2 (mult) : w is a WB-bit integer (SIGNED_W); the lane is x * w (LUT multiplier;
//                   used only to calibrate the cost model like for like)
//
// acc_out = (first ? 0 : acc_in) + sum_s lane(x[s], w[s]), ACC_W-bit two's complement.
// Purely combinational: the surrounding core registers it.
module nashc_mvau_pe #(
    parameter int KIND = 0,
    parameter int SIMD = 1,
    parameter int A = 4,          // activation bits
    parameter int SIGNED_X = 0,   // activations are signed
    parameter int WB = 4,         // weight (code word) bits
    parameter int SIGNED_W = 1,   // adder/mult: the weights are signed
    parameter int KMAX = 0,       // shift: largest shift code used
    parameter int ACC_W = 16      // accumulator bits (signed)
) (
    input  logic [SIMD*A-1:0]  x,
    input  logic [SIMD*WB-1:0] w,
    input  logic               first,
    input  logic [ACC_W-1:0]   acc_in,
    output logic [ACC_W-1:0]   acc_out
);
    // a signed activation of A + 1 bits holds both signed and unsigned inputs
    localparam int XW = A + 1;
    // shift lane: x shifted by at most KMAX, plus one bit for the negation
    localparam int SW = XW + KMAX + 1;
    // adder lane: x - w needs max(XW, WB) + 1 bits; |x - w| one bit less
    localparam int WX = WB + 1;
    localparam int DW = ((XW > WX) ? XW : WX) + 1;
    // mult lane
    localparam int MWID = XW + WX;

    function automatic logic signed [XW-1:0] xval(input logic [A-1:0] v);
        if (SIGNED_X != 0) xval = $signed({v[A-1], v});
        else xval = $signed({1'b0, v});
    endfunction

    function automatic logic signed [WX-1:0] wval(input logic [WB-1:0] v);
        if (SIGNED_W != 0) wval = $signed({v[WB-1], v});
        else wval = $signed({1'b0, v});
    endfunction

    logic signed [ACC_W-1:0] lane [SIMD];

    always_comb begin
        for (int s = 0; s < SIMD; s++) begin
            logic signed [XW-1:0] xs;
            logic [WB-1:0] ws;
            xs = xval(x[s*A +: A]);
            ws = w[s*WB +: WB];
            if (KIND == 0) begin
                logic signed [SW-1:0] sh;
                logic [WB-2:0] code;
                code = ws[WB-2:0];
                sh = SW'(xs) <<< code;
                if (32'(code) > KMAX) lane[s] = '0;
                else if (ws[WB-1]) lane[s] = ACC_W'(-sh);
                else lane[s] = ACC_W'(sh);
            end else if (KIND == 1) begin
                logic signed [DW-1:0] d;
                logic [DW-2:0] mag;
                d = DW'(xs) - DW'(wval(ws));
                mag = d[DW-1] ? (DW-1)'(-d) : (DW-1)'(d);
                lane[s] = -(ACC_W'($signed({1'b0, mag})));
            end else begin
                logic signed [MWID-1:0] p;
                p = MWID'(xs) * MWID'(wval(ws));
                lane[s] = ACC_W'(p);
            end
        end
    end

    always_comb begin
        logic signed [ACC_W-1:0] sum;
        sum = first ? '0 : $signed(acc_in);
        for (int s = 0; s < SIMD; s++) sum = sum + lane[s];
        acc_out = sum;
    end
endmodule
