// nashc: Verilator testbench for a module with FINN's AXI-stream interface
// (ap_clk, ap_rst_n, in0_V_TDATA/TVALID/TREADY, out0_V_TDATA/TVALID/TREADY).
//
// usage: Vtop IN.hex OUT.hex N_OUT SEED STALL_PERCENT MAX_CYCLES
// Feeds the beats of IN.hex (one hexadecimal word a line) to in0, collects N_OUT beats
// of out0 into OUT.hex. With STALL_PERCENT > 0 the source drops TVALID and the sink
// drops TREADY at random (seeded) cycles, to exercise back-pressure. Prints
// "cycles N" (cycles from reset release to the last output beat). Exit code 3 on time-out.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

using Words = std::vector<uint32_t>;

static Words parse_hex(const std::string& s, size_t nwords) {
    Words w(nwords + 2, 0);
    size_t bit = 0;
    for (size_t i = s.size(); i-- > 0;) {
        char c = s[i];
        uint32_t v;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        else continue;
        if (bit / 32 < w.size()) w[bit / 32] |= v << (bit % 32);
        bit += 4;
    }
    return w;
}

template <typename T> static void set_port(T& port, const Words& w) {
    uint64_t v = w[0];
    if (sizeof(T) > 4) v |= static_cast<uint64_t>(w[1]) << 32;
    port = static_cast<T>(v);
}
template <std::size_t N> static void set_port(VlWide<N>& port, const Words& w) {
    for (std::size_t i = 0; i < N; i++) port[i] = w[i];
}
template <typename T> static Words get_port(const T& port) {
    uint64_t v = static_cast<uint64_t>(port);
    return Words{static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)};
}
template <std::size_t N> static Words get_port(const VlWide<N>& port) {
    Words w(N);
    for (std::size_t i = 0; i < N; i++) w[i] = port[i];
    return w;
}
static std::string to_hex(const Words& w) {
    std::string s;
    char buf[9];
    for (std::size_t i = w.size(); i-- > 0;) {
        std::snprintf(buf, sizeof buf, "%08x", w[i]);
        s += buf;
    }
    return s;
}

int main(int argc, char** argv) {
    if (argc < 7) {
        std::fprintf(stderr, "usage: %s IN.hex OUT.hex N_OUT SEED STALL_PERCENT MAX_CYCLES\n",
                     argv[0]);
        return 2;
    }
    std::vector<std::string> lines;
    {
        std::ifstream in(argv[1]);
        std::string line;
        while (std::getline(in, line))
            if (!line.empty()) lines.push_back(line);
    }
    const long n_out = std::atol(argv[3]);
    std::mt19937 rng(static_cast<unsigned>(std::atol(argv[4])));
    const int stall = std::atoi(argv[5]);
    const long max_cycles = std::atol(argv[6]);

    auto ctx = new VerilatedContext;
    auto top = new Vtop{ctx};
    const size_t in_words = sizeof(top->in0_V_TDATA) / 4 + 1;
    std::ofstream out(argv[2]);

    auto tick = [&]() {
        top->ap_clk = 0;
        top->eval();
        top->ap_clk = 1;
        top->eval();
    };
    top->ap_rst_n = 0;
    top->in0_V_TVALID = 0;
    top->out0_V_TREADY = 0;
    for (int i = 0; i < 4; i++) tick();
    top->ap_rst_n = 1;

    size_t next_in = 0;
    long got = 0, cycle = 0;
    std::uniform_int_distribution<int> pct(0, 99);
    while (got < n_out && cycle < max_cycles) {
        top->ap_clk = 0;
        top->eval();
        // drive the inputs for this cycle
        bool offer = next_in < lines.size() && !(stall > 0 && pct(rng) < stall);
        top->in0_V_TVALID = offer ? 1 : 0;
        if (offer) set_port(top->in0_V_TDATA, parse_hex(lines[next_in], in_words));
        bool take = !(stall > 0 && pct(rng) < stall);
        top->out0_V_TREADY = take ? 1 : 0;
        top->eval();
        // sample handshakes before the rising edge
        bool in_fire = top->in0_V_TVALID && top->in0_V_TREADY;
        bool out_fire = top->out0_V_TVALID && top->out0_V_TREADY;
        if (out_fire) {
            out << to_hex(get_port(top->out0_V_TDATA)) << "\n";
            got++;
        }
        top->ap_clk = 1;
        top->eval();
        if (in_fire) next_in++;
        cycle++;
    }
    out.close();
    std::printf("cycles %ld\n", cycle);
    top->final();
    delete top;
    delete ctx;
    return got < n_out ? 3 : 0;
}
