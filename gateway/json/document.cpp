// Parsing with duplicate keys refused, and locating pointers in the text.
// nlohmann's SAX interface reports no positions for values, so locate()
// reads the text through an iterator that records how far the lexer got.
#include "gateway/json/document.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <iterator>
#include <unordered_map>

namespace relaygate::json_reader {

using nlohmann::json;

std::string pointer(std::string_view base, std::string_view key) {
    std::string out;
    out.reserve(base.size() + key.size() + 1);
    out += base;
    out += '/';
    for (char c : key) {
        if (c == '~') {
            out += "~0";
        } else if (c == '/') {
            out += "~1";
        } else {
            out += c;
        }
    }
    return out;
}

std::string pointer(std::string_view base, std::size_t index) {
    return fmt::format("{}/{}", base, index);
}

Position position_at(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    Position p{1, 1};
    for (std::size_t i = 0; i < offset; ++i) {
        if (text[i] == '\n') {
            ++p.line;
            p.column = 1;
        } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
            ++p.column;  // UTF-8 continuation bytes belong to the previous character
        }
    }
    return p;
}

std::optional<std::pair<std::string, std::size_t>> first_token(std::string_view path) {
    if (!path.starts_with('/')) return std::nullopt;
    const auto end = std::min(path.find('/', 1), path.size());
    std::string token;
    for (std::size_t k = 1; k < end; ++k) {
        if (path[k] == '~' && k + 1 < end) {
            token += path[k + 1] == '1' ? '/' : '~';
            ++k;
        } else {
            token += path[k];
        }
    }
    return std::pair{std::move(token), end};
}

std::string where(std::string_view path, Position p) {
    std::string_view shown = path.empty() ? std::string_view("/") : path;
    if (!p.known()) return std::string(shown);
    return fmt::format("{} (line {}, column {})", shown, p.line, p.column);
}

namespace {

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Printable ASCII other than '"' and '\\' is written as it is.
void append_string(std::string_view s, std::string& out) {
    if (std::all_of(s.begin(), s.end(),
                    [](char c) { return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'; })) {
        out += '"';
        out += s;
        out += '"';
    } else {
        out += dump(json(s));
    }
}

template <typename Integer>
void append_integer(Integer v, std::string& out) {
    char digits[24];
    const auto end = std::to_chars(std::begin(digits), std::end(digits), v).ptr;
    out.append(digits, end);
}

}  // namespace

void append_canonical(const json& j, std::string& out) {
    using value_t = json::value_t;
    switch (j.type()) {
        case value_t::object: {
            out += '{';
            bool first = true;
            for (const auto& [key, value] : j.items()) {
                if (!first) out += ',';
                first = false;
                append_string(key, out);
                out += ':';
                append_canonical(value, out);
            }
            out += '}';
            return;
        }
        case value_t::array: {
            out += '[';
            bool first = true;
            for (const auto& value : j) {
                if (!first) out += ',';
                first = false;
                append_canonical(value, out);
            }
            out += ']';
            return;
        }
        case value_t::string:
            return append_string(j.get_ref<const std::string&>(), out);
        case value_t::number_integer:
            return append_integer(j.get<std::int64_t>(), out);
        case value_t::number_unsigned:
            return append_integer(j.get<std::uint64_t>(), out);
        case value_t::boolean:
            out += j.get<bool>() ? "true" : "false";
            return;
        case value_t::null:
            out += "null";
            return;
        default:  // floats, binary: as nlohmann writes them
            out += dump(j);
            return;
    }
}

std::string describe(const json& j) {
    switch (j.type()) {
        case json::value_t::null:
            return "null";
        case json::value_t::object:
            return "an object";
        case json::value_t::array:
            return "an array";
        case json::value_t::string:
            return "a string";
        case json::value_t::boolean:
            return "a boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
        case json::value_t::number_float:
            return "a number";
        default:
            return "an unsupported value";
    }
}

std::string unknown_key(std::string_view key, std::initializer_list<std::string_view> allowed) {
    return fmt::format("unknown key \"{}\" (allowed: {})", key, fmt::join(allowed, ", "));
}

namespace {

// nlohmann's messages start with "[json.exception.parse_error.101] ".
std::string strip_exception_id(std::string message) {
    if (auto pos = message.find("] ");
        message.starts_with("[json.exception") && pos != std::string::npos)
        message = message.substr(pos + 2);
    return message;
}

// Builds the document in one SAX pass and reports duplicate object keys
// with their path (nlohmann's DOM parser silently keeps the last one; its
// parser callback could catch them but rescans the parent object at every
// object end: quadratic on 100k policy tenants). The duplicate check is the
// lookup that inserting the key into the object's std::map does anyway.
class DocumentBuilder : public json::json_sax_t {
  public:
    explicit DocumentBuilder(json& root) : root_(root) {}

    std::vector<ParseError> errors;
    std::string syntax_error;
    std::size_t syntax_offset = 0;

    bool null() override { return value(nullptr); }
    bool boolean(bool v) override { return value(v); }
    bool number_integer(number_integer_t v) override { return value(v); }
    bool number_unsigned(number_unsigned_t v) override { return value(v); }
    bool number_float(number_float_t v, const string_t&) override { return value(v); }
    bool string(string_t& v) override { return value(v); }
    bool binary(binary_t& v) override { return value(std::move(v)); }
    bool start_object(std::size_t) override {
        frames_.push_back({value_ref(json::value_t::object), nullptr});
        return true;
    }
    bool key(string_t& k) override {
        auto& object = frames_.back().container->get_ref<json::object_t&>();
        auto [it, fresh] = object.try_emplace(k);
        frames_.back().key = &it->first;
        if (!fresh) {
            // The later value replaces the earlier one; the parse fails anyway.
            it->second = nullptr;
            if (errors.size() < 100)
                errors.push_back({path(),
                                  "duplicate_key",
                                  fmt::format("key \"{}\" appears twice in the same object; JSON "
                                              "parsers disagree on which one counts",
                                              k),
                                  {}});
        }
        element_ = &it->second;
        return true;
    }
    bool end_object() override {
        frames_.pop_back();
        return true;
    }
    bool start_array(std::size_t) override {
        frames_.push_back({value_ref(json::value_t::array), nullptr});
        return true;
    }
    bool end_array() override {
        frames_.pop_back();
        return true;
    }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& e) override {
        syntax_error = strip_exception_id(e.what());
        // `position` counts the characters read, the offending one included.
        syntax_offset = position ? position - 1 : 0;
        return false;
    }

  private:
    struct Frame {
        json* container;
        const std::string* key;  // object: the key whose value is being read
    };
    template <class V>
    bool value(V&& v) {
        value_ref(std::forward<V>(v));
        return true;
    }
    // Stores a value where the parser is (root, next array element, or the
    // current key's slot) and returns it.
    template <class V>
    json* value_ref(V&& v) {
        if (frames_.empty()) {
            root_ = json(std::forward<V>(v));
            return &root_;
        }
        json* c = frames_.back().container;
        if (c->is_array()) {
            auto& array = c->get_ref<json::array_t&>();
            array.emplace_back(std::forward<V>(v));
            return &array.back();
        }
        *element_ = json(std::forward<V>(v));
        return element_;
    }
    std::string path() const {
        std::string out;
        for (const auto& f : frames_) {
            if (f.container->is_array()) {
                // The element being read is the last one appended.
                out = pointer(out, f.container->size() - 1);
            } else {
                out = pointer(out, f.key ? std::string_view(*f.key) : std::string_view());
            }
        }
        return out;
    }

    json& root_;
    json* element_ = nullptr;
    std::vector<Frame> frames_;
};

// An input iterator over the text that records the furthest character the
// lexer has read. At a SAX event that is the end of the token just read
// (numbers: one character more, which the lexer keeps for the next token).
class TrackingIterator {
  public:
    using iterator_category = std::input_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char*;
    using reference = const char&;

    TrackingIterator(const char* p, const char** furthest) : p_(p), furthest_(furthest) {}
    reference operator*() const { return *p_; }
    TrackingIterator& operator++() {
        *furthest_ = ++p_;
        return *this;
    }
    TrackingIterator operator++(int) {
        TrackingIterator old = *this;
        ++*this;
        return old;
    }
    bool operator==(const TrackingIterator& o) const { return p_ == o.p_; }

  private:
    const char* p_;
    const char** furthest_;
};

// Follows the pointer of every value and records where the wanted ones
// start. Between two SAX events the text holds at most whitespace and one
// ',' or ':' before the next token, so a value starts at the first other
// character after the previous event's end.
class Locator : public json::json_sax_t {
  public:
    Locator(std::string_view text, const char** furthest,
            const std::unordered_map<std::string_view, std::vector<std::size_t>>& wanted,
            std::vector<std::size_t>& offsets)
        : text_(text), furthest_(furthest), wanted_(wanted), offsets_(offsets) {
        // The lexer skips a UTF-8 byte order mark before the first token.
        if (text.starts_with("\xEF\xBB\xBF")) previous_end_ = 3;
    }

    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t) override { return value(); }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool string(string_t&) override { return value(); }
    bool binary(binary_t&) override { return value(); }
    bool start_object(std::size_t) override { return open(false); }
    bool start_array(std::size_t) override { return open(true); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool key(string_t& k) override {
        path_.resize(frames_.back().base);
        path_ = pointer(path_, k);
        previous_end_ = offset();
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }

  private:
    struct Frame {
        std::size_t base;  // path_ length of the container
        std::size_t next_index;
        bool array;
    };
    std::size_t offset() const { return static_cast<std::size_t>(*furthest_ - text_.data()); }
    bool value() {
        if (!frames_.empty() && frames_.back().array) {
            path_.resize(frames_.back().base);
            path_ = pointer(path_, frames_.back().next_index++);
        }
        if (auto it = wanted_.find(path_); it != wanted_.end()) {
            std::size_t start = previous_end_;
            while (start < text_.size() &&
                   std::string_view(" \t\r\n,:").find(text_[start]) != std::string_view::npos)
                ++start;
            for (std::size_t i : it->second)
                offsets_[i] = start;  // the last occurrence wins
        }
        previous_end_ = offset();
        return true;
    }
    bool open(bool array) {
        value();
        frames_.push_back({path_.size(), 0, array});
        return true;
    }
    bool close() {
        frames_.pop_back();
        previous_end_ = offset();
        return true;
    }

    std::string_view text_;
    const char** furthest_;
    const std::unordered_map<std::string_view, std::vector<std::size_t>>& wanted_;
    std::vector<std::size_t>& offsets_;
    std::vector<Frame> frames_;
    std::string path_;
    std::size_t previous_end_ = 0;
};

}  // namespace

std::vector<Position> locate(std::string_view text, const std::vector<std::string>& pointers) {
    constexpr auto kNowhere = static_cast<std::size_t>(-1);
    std::vector<Position> positions(pointers.size());
    std::unordered_map<std::string_view, std::vector<std::size_t>> wanted;
    for (std::size_t i = 0; i < pointers.size(); ++i)
        wanted[pointers[i]].push_back(i);
    std::vector<std::size_t> offsets(pointers.size(), kNowhere);
    const char* furthest = text.data();
    Locator locator(text, &furthest, wanted, offsets);
    try {
        json::sax_parse(TrackingIterator(text.data(), &furthest),
                        TrackingIterator(text.data() + text.size(), &furthest), &locator);
    } catch (const json::exception&) {
        return positions;  // parse() reports the text's own errors
    }
    // Offsets to lines and columns in one sweep over the text.
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < offsets.size(); ++i)
        if (offsets[i] != kNowhere) order.push_back(i);
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return offsets[a] < offsets[b]; });
    Position p{1, 1};
    std::size_t at = 0;
    for (std::size_t i : order) {
        const Position step = position_at(text.substr(at), offsets[i] - at);
        p = step.line > 1 ? Position{p.line + step.line - 1, step.column}
                          : Position{p.line, p.column + step.column - 1};
        at = offsets[i];
        positions[i] = p;
    }
    return positions;
}

Result<json, std::vector<ParseError>> parse(std::string_view text) {
    json doc;
    DocumentBuilder builder(doc);
    bool ok = false;
    try {
        ok = json::sax_parse(text.data(), text.data() + text.size(), &builder);
    } catch (const json::exception& e) {
        return unexpected(
            std::vector<ParseError>{{"", "json_syntax", strip_exception_id(e.what()), {}}});
    }
    if (!ok || !builder.syntax_error.empty())
        return unexpected(std::vector<ParseError>{
            {"", "json_syntax",
             builder.syntax_error.empty() ? "invalid JSON" : builder.syntax_error,
             builder.syntax_error.empty() ? Position{}
                                          : position_at(text, builder.syntax_offset)}});
    if (!builder.errors.empty()) {
        std::vector<std::string> paths;
        for (const auto& e : builder.errors)
            paths.push_back(e.path);
        auto positions = locate(text, paths);
        for (std::size_t i = 0; i < positions.size(); ++i)
            builder.errors[i].position = positions[i];
        return unexpected(std::move(builder.errors));
    }
    return doc;
}

}  // namespace relaygate::json_reader

namespace relaygate::json_reader {

namespace {

constexpr bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Distinct keys: sorted once (a policy's "tenants" has 100k of them), by
// their hash first so that most comparisons are of two integers.
bool distinct_keys(const std::vector<MemberScanner::Member>& members) {
    std::vector<std::pair<std::size_t, std::string_view>> keys;
    keys.reserve(members.size());
    for (const auto& m : members)
        keys.emplace_back(std::hash<std::string_view>{}(m.key), m.key);
    std::sort(keys.begin(), keys.end());
    return std::adjacent_find(keys.begin(), keys.end()) == keys.end();
}

}  // namespace

bool MemberScanner::feed(std::string_view piece) {
    begin_ = counted_ = piece.data();
    const char* const end = begin_ + piece.size();
    for (at_ = begin_; at_ != end; ++at_) {
        at_ = skip_bulk(at_, end);
        if (at_ == end) break;
        step(*at_);
        if (!ok_) return false;
    }
    count_to(end);
    offset_ += piece.size();
    return true;
}

const char* MemberScanner::skip_bulk(const char* at, const char* end) const {
    // Most of a policy is values: in a string that is not a key (keys are
    // collected octet by octet) only '"' and '\\' matter; between the
    // strings of a container value, only '"' and the brackets.
    static constexpr auto stops = [](std::string_view special) {
        std::array<bool, 256> table{};
        for (const char c : special)
            table[static_cast<unsigned char>(c)] = true;
        return table;
    };
    static constexpr auto in_string = stops("\"\\");
    static constexpr auto in_container = stops("\"{}[]");
    const std::array<bool, 256>* table = nullptr;
    if (in_string_ && !in_key_ && !escape_)
        table = &in_string;
    else if (!in_string_ && depth_ > 0)
        table = &in_container;
    else
        return at;
    while (at != end && !(*table)[static_cast<unsigned char>(*at)])
        ++at;
    return at;
}

Position MemberScanner::here() {
    count_to(at_);
    return here_;
}

void MemberScanner::count_to(const char* to) {
    const char* from = counted_;
    counted_ = to;
    if (from == to) return;  // also an empty piece's null data, for memrchr
    if (const auto* nl = static_cast<const char*>(::memrchr(from, '\n', to - from))) {
        here_.line += static_cast<std::size_t>(std::count(from, nl + 1, '\n'));
        here_.column = 1;
        from = nl + 1;
    }
    // UTF-8 continuation octets belong to the previous character.
    here_.column += static_cast<std::size_t>(std::count_if(
        from, to, [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

bool MemberScanner::finish() {
    ok_ = ok_ && expect_ == Expect::done && distinct_keys(members_) && distinct_keys(nested_);
    return ok_;
}

void MemberScanner::step(char c) {
    if (in_string_) {
        if (escape_) {
            escape_ = false;
        } else if (c == '\\') {
            escape_ = true;
            ok_ = !in_key_;  // an escaped key is not plain
        } else if (c == '"') {
            in_string_ = false;
            if (in_key_) {
                in_key_ = false;
                expect_ = Expect::colon;
            } else if (value_open_) {
                end_value(pos() + 1);
            }
        } else if (in_key_) {
            key_ += c;
        }
        return;
    }
    if (depth_ > 0) {  // inside a container value of the current level
        if (c == '"') {
            in_string_ = true;
        } else if (c == '{' || c == '[') {
            ++depth_;
        } else if ((c == '}' || c == ']') && --depth_ == 0) {
            end_value(pos() + 1);
        }
        return;
    }
    if (scalar_) {
        if (c != ',' && c != '}' && c != ']' && !is_space(c)) return;
        scalar_ = false;
        end_value(pos());  // and `c` is the token after it
    }
    if (is_space(c)) return;
    switch (expect_) {
        case Expect::open:
            ok_ = c == '{';
            start_ = here();
            level_ = 1;
            expect_ = Expect::key_or_end;
            return;
        case Expect::key_or_end:
            if (c == '}') return close_object();
            [[fallthrough]];
        case Expect::key:
            ok_ = c == '"';
            in_string_ = in_key_ = true;
            key_.clear();
            return;
        case Expect::colon:
            ok_ = c == ':';
            expect_ = Expect::value;
            return;
        case Expect::value:
            return begin_value(c);
        case Expect::comma_or_end:
            if (c == '}') return close_object();
            ok_ = c == ',';
            expect_ = Expect::key;
            return;
        case Expect::done:
            ok_ = false;
            return;
    }
}

void MemberScanner::begin_value(char c) {
    auto& list = level();
    list.push_back({std::move(key_), {pos(), 0, here()}});
    key_.clear();
    expect_ = Expect::comma_or_end;
    if (level_ == 1 && c == '{' && nested_at_ == kNone && list.back().key == nested_key_) {
        nested_at_ = list.size() - 1;
        level_ = 2;
        expect_ = Expect::key_or_end;
    } else if (c == '"') {
        in_string_ = value_open_ = true;
    } else if (c == '{' || c == '[') {
        depth_ = 1;
    } else if (c == ',' || c == '}' || c == ']' || c == ':') {
        ok_ = false;
    } else {
        scalar_ = true;
    }
}

void MemberScanner::end_value(std::uint64_t end) {
    auto& list = level();
    auto& v = list.back().value;
    v.length = end - v.offset;
    value_open_ = false;
    if (level_ == 2 && sink_) {
        ok_ = ok_ && sink_(list.back());
        list.pop_back();
    }
}

void MemberScanner::close_object() {
    if (level_ == 2) {
        level_ = 1;
        end_value(pos() + 1);
        expect_ = Expect::comma_or_end;
    } else {
        level_ = 0;
        expect_ = Expect::done;
    }
}

}  // namespace relaygate::json_reader
