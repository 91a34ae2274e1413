// nashc: a folded hybrid matrix-vector unit (shift or adder MVAU) with FINN's MVAU
// stream interface and folding.
//
// Per input vector of MW activations (SF = MW / SIMD beats of SIMD activations on in0,
// activation s of a beat in bits [s*A +: A]) it produces MH outputs in NF = MH / PE
// beats of PE outputs on out0 (output p of beat nf is channel nf*PE + p, in bits
// [p*O +: O]), as FINN's MVAU does: the first neuron fold reads the input stream and
// keeps the vector in a buffer, the other NF - 1 folds replay it. One (nf, sf) step
// per cycle: NF * SF cycles per vector (FINN's get_exp_cycles), two cycles of latency.
//
// Weights are a ROM of WMEM = NF * SF words (address nf * SF + sf), each PE * SIMD code
// words of WB bits (PE p, lane s at bits [(p*SIMD + s)*WB +: WB]), loaded from
// WEIGHT_FILE with $readmemh; read synchronously (nashc_rom, ROM_STYLE as FINN's
// ram_style: block RAM or LUTRAM).
// With NO_ACT = 0 the accumulator of channel c is compared with its T thresholds
// (THRESH_FILE: NF words of PE * T thresholds of TW bits, PE p threshold t at
// [(p*T + t)*TW +: TW], signed) and the output is ACTVAL + #{t : acc >= thr[c][t]}
// (FINN's MultiThreshold with out_scale 1, out_bias ACTVAL); with NO_ACT = 1 the
// output is the accumulator (O = its width).
module nashc_mvau #(
    parameter int KIND = 0,
    parameter int MW = 4,
    parameter int MH = 4,
    parameter int PE = 1,
    parameter int SIMD = 1,
    parameter int A = 4,
    parameter int SIGNED_X = 0,
    parameter int WB = 4,
    parameter int SIGNED_W = 1,
    parameter int KMAX = 0,
    parameter int ACC_W = 16,
    parameter int NO_ACT = 1,
    parameter int T = 1,
    parameter int TW = 16,
    parameter int O = 16,
    parameter int ACTVAL = 0,
    parameter int IN_W = 8,
    parameter int OUT_W = 16,
    parameter WEIGHT_FILE = "weights.mem",
    parameter THRESH_FILE = "thresholds.mem",
    parameter ROM_STYLE = "auto"
) (
    input  logic              ap_clk,
    input  logic              ap_rst_n,
    input  logic [IN_W-1:0]   in0_V_TDATA,
    input  logic              in0_V_TVALID,
    output logic              in0_V_TREADY,
    output logic [OUT_W-1:0]  out0_V_TDATA,
    output logic              out0_V_TVALID,
    input  logic              out0_V_TREADY
);
    localparam int SF = MW / SIMD;
    localparam int NF = MH / PE;
    localparam int WMEM = SF * NF;
    localparam int WROW = PE * SIMD * WB;
    localparam int TROW = PE * T * TW;
    localparam int SFW = (SF > 1) ? $clog2(SF) : 1;
    localparam int NFW = (NF > 1) ? $clog2(NF) : 1;
    localparam int WAW = (WMEM > 1) ? $clog2(WMEM) : 1;

    // ---- memories ----------------------------------------------------------------
    logic [SIMD*A-1:0] ibuf [SF];

    // ---- stage 1: issue one (nf, sf) step ----------------------------------------
    logic [SFW-1:0] sf;
    logic [NFW-1:0] nf;
    logic [WAW-1:0] waddr;
    logic adv;          // the pipeline moves this cycle
    logic have_x;       // the step's activations are available
    assign have_x = (nf != 0) || in0_V_TVALID;
    assign in0_V_TREADY = adv && (nf == 0);

    logic              v2, first2, last2;
    logic [SIMD*A-1:0] x2;
    logic [WROW-1:0]   w2;
    logic [TROW-1:0]   t2;

    always_ff @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            sf <= '0; nf <= '0; waddr <= '0; v2 <= 1'b0;
        end else if (adv) begin
            v2 <= have_x;
            if (have_x) begin
                first2 <= (sf == 0);
                last2 <= (32'(sf) == SF - 1);
                if (nf == 0) begin
                    x2 <= in0_V_TDATA[SIMD*A-1:0];
                    ibuf[sf] <= in0_V_TDATA[SIMD*A-1:0];
                end else begin
                    x2 <= ibuf[sf];
                end
                waddr <= (32'(waddr) == WMEM - 1) ? '0 : waddr + 1'b1;
                if (32'(sf) == SF - 1) begin
                    sf <= '0;
                    nf <= (32'(nf) == NF - 1) ? '0 : nf + 1'b1;
                end else begin
                    sf <= sf + 1'b1;
                end
            end
        end
    end
    // synchronous ROM reads, enabled like the pipeline
    nashc_rom #(.W(WROW), .D(WMEM), .FILE(WEIGHT_FILE), .STYLE(ROM_STYLE)) u_wrom (
        .clk(ap_clk), .en(adv && have_x), .addr(waddr), .q(w2));
    if (NO_ACT == 0) begin : g_trom
        nashc_rom #(.W(TROW), .D(NF), .FILE(THRESH_FILE), .STYLE(ROM_STYLE)) u_trom (
            .clk(ap_clk), .en(adv && have_x), .addr(nf), .q(t2));
    end else begin : g_notrom
        assign t2 = '0;
    end

    // ---- stage 2: accumulate, threshold, output register --------------------------
    logic [ACC_W-1:0] acc [PE];
    logic [ACC_W-1:0] accn [PE];
    logic [OUT_W-1:0] res;
    for (genvar p = 0; p < PE; p++) begin : g_pe
        nashc_mvau_pe #(
            .KIND(KIND), .SIMD(SIMD), .A(A), .SIGNED_X(SIGNED_X), .WB(WB),
            .SIGNED_W(SIGNED_W), .KMAX(KMAX), .ACC_W(ACC_W)
        ) u_pe (
            .x(x2), .w(w2[p*SIMD*WB +: SIMD*WB]), .first(first2), .acc_in(acc[p]),
            .acc_out(accn[p])
        );
    end

    always_comb begin
        res = '0;
        for (int p = 0; p < PE; p++) begin
            if (NO_ACT != 0) begin
                res[p*O +: O] = O'(accn[p]);
            end else begin
                logic signed [31:0] cnt;
                cnt = ACTVAL;
                for (int t = 0; t < T; t++) begin
                    if ($signed(ACC_W'(accn[p])) >= $signed(t2[(p*T + t)*TW +: TW])) begin
                        cnt = cnt + 1;
                    end
                end
                res[p*O +: O] = O'(cnt);
            end
        end
    end

    logic ovalid;
    logic [OUT_W-1:0] odata;
    assign adv = !(v2 && last2 && ovalid && !out0_V_TREADY);
    assign out0_V_TVALID = ovalid;
    assign out0_V_TDATA = odata;

    always_ff @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            ovalid <= 1'b0;
        end else begin
            if (out0_V_TREADY) ovalid <= 1'b0;
            if (adv && v2 && last2) begin
                ovalid <= 1'b1;
                odata <= res;
            end
        end
    end
    always_ff @(posedge ap_clk) begin
        if (adv && v2 && !last2) begin
            for (int p = 0; p < PE; p++) acc[p] <= accn[p];
        end
    end
endmodule
