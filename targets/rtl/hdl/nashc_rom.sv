// nashc: a ROM initialised from a $readmemh file, read synchronously with an enable.
// STYLE "block" / "distributed" sets Vivado's rom_style (FINN's ram_style of the
// layer), "auto" leaves the choice to synthesis.
module nashc_rom #(
    parameter int W = 8,
    parameter int D = 1,
    parameter FILE = "rom.mem",
    parameter STYLE = "auto"
) (
    input  logic                           clk,
    input  logic                           en,
    input  logic [((D > 1) ? $clog2(D) : 1)-1:0] addr,
    output logic [W-1:0]                   q
);
    if (STYLE == "block") begin : g_block
        (* rom_style = "block" *) logic [W-1:0] mem [D];
        initial $readmemh(FILE, mem);
        always_ff @(posedge clk) if (en) q <= mem[addr];
    end else if (STYLE == "distributed") begin : g_dist
        (* rom_style = "distributed" *) logic [W-1:0] mem [D];
        initial $readmemh(FILE, mem);
        always_ff @(posedge clk) if (en) q <= mem[addr];
    end else begin : g_auto
        logic [W-1:0] mem [D];
        initial $readmemh(FILE, mem);
        always_ff @(posedge clk) if (en) q <= mem[addr];
    end
endmodule
