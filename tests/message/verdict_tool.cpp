// message_verdict: prints relaygate's header verdict for each .eml file, one
// tab-separated line each, for tests/message/differential.py. Test tool only;
// files named *.utf8.eml are read as if SMTPUTF8 had been negotiated.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "gateway/message/header_collector.hpp"
#include "gateway/message/header_reader.hpp"

using namespace relaygate;
using namespace relaygate::message;

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string path = argv[i];
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            std::cerr << "cannot read " << path << "\n";
            return 2;
        }
        std::stringstream ss;
        ss << in.rdbuf();
        std::string data = ss.str();

        HeaderOptions options;
        options.smtputf8 = path.find(".utf8.") != std::string::npos;
        HeaderCollector collector(options.max_header_bytes);
        std::size_t consumed = 0;
        auto status = collector.feed(data, consumed);
        if (status == HeaderCollector::Status::need_more) status = collector.finish();
        std::cout << path << '\t';
        if (status == HeaderCollector::Status::too_big) {
            std::cout << "REJECT\theader_too_big\tcollector\n";
            continue;
        }
        auto facts = read_header(collector.header(), options);
        if (!facts) {
            std::string detail = facts.error().detail;
            for (char& c : detail)
                if (c == '\t' || c == '\n' || c == '\r') c = ' ';
            std::cout << "REJECT\t" << label(facts.error().reason) << '\t' << detail << '\n';
            continue;
        }
        auto from = facts->mailboxes(OriginatorField::from);
        std::cout << "ACCEPT\t" << from.size() << '\t';
        for (std::size_t k = 0; k < from.size(); ++k)
            std::cout << (k ? "," : "") << from[k]->local_part << '@' << from[k]->domain;
        std::cout << '\n';
    }
    return 0;
}
