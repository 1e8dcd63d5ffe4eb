// Test helper: every way of cutting an input for incremental parsers (as
// Beast's parsegrind does). Each piece is a separate heap string that the
// driver destroys after feeding it, so a parser that keeps a view into an
// earlier piece is caught by ASan.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace relaygate::test {

struct Split {
    std::string name;  // for CAPTURE: the cut positions
    std::vector<std::string> pieces;
};

// The whole input; every cut into two pieces (including empty ones at either
// end); every cut into three pieces for inputs up to `three_way_max` octets;
// and one piece per octet.
inline std::vector<Split> all_splits(std::string_view input, std::size_t three_way_max = 48) {
    std::vector<Split> out;
    out.push_back({"whole", {std::string(input)}});
    for (std::size_t i = 0; i <= input.size(); ++i)
        out.push_back({"cut " + std::to_string(i),
                       {std::string(input.substr(0, i)), std::string(input.substr(i))}});
    if (input.size() <= three_way_max) {
        for (std::size_t i = 1; i < input.size(); ++i)
            for (std::size_t j = i + 1; j < input.size(); ++j)
                out.push_back(
                    {"cuts " + std::to_string(i) + "," + std::to_string(j),
                     {std::string(input.substr(0, i)), std::string(input.substr(i, j - i)),
                      std::string(input.substr(j))}});
    }
    Split bytes{"bytewise", {}};
    for (char c : input)
        bytes.pieces.emplace_back(1, c);
    out.push_back(std::move(bytes));
    return out;
}

}  // namespace relaygate::test
