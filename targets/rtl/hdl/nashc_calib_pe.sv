// nashc: one PE of a matrix-vector unit with registered activations, weights and
// accumulator, for synthesis-calibrating the per-lane cost (bench/calibrate_lanes.py).
// The weights are inputs (as when streamed from a weight memory), so no lane is
// simplified by constant weights. Activations unsigned, weights signed.
module nashc_calib_pe #(
    parameter int KIND = 2,
    parameter int SIMD = 8,
    parameter int A = 4,
    parameter int WB = 4,
    parameter int KMAX = 0,
    parameter int ACC_W = 16
) (
    input  logic              clk,
    input  logic [SIMD*A-1:0]  x_i,
    input  logic [SIMD*WB-1:0] w_i,
    input  logic              first_i,
    output logic [ACC_W-1:0]   acc_o
);
    logic [SIMD*A-1:0] x;
    logic [SIMD*WB-1:0] w;
    logic first;
    logic [ACC_W-1:0] acc, accn;
    always_ff @(posedge clk) begin
        x <= x_i;
        w <= w_i;
        first <= first_i;
        acc <= accn;
    end
    nashc_mvau_pe #(
        .KIND(KIND), .SIMD(SIMD), .A(A), .SIGNED_X(0), .WB(WB), .SIGNED_W(1),
        .KMAX(KMAX), .ACC_W(ACC_W)
    ) u_pe (.x(x), .w(w), .first(first), .acc_in(acc), .acc_out(accn));
    assign acc_o = acc;
endmodule
