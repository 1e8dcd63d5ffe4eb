// RESP over hiredis 0.14: its reader parses, we convert each redisReply
// into a Value and free it at once. The limits are enforced by wrapping
// hiredis's own object constructors (refusing an array before hiredis
// allocates its element vector) and by counting the bytes of the reply
// being read (hiredis would otherwise buffer a bulk string of any size).
#include "gateway/redis/resp.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <cstdlib>
#include <limits>
#include <new>

namespace relaygate::resp {

std::string_view to_string(Type t) {
    switch (t) {
        case Type::string:
            return "string";
        case Type::status:
            return "status";
        case Type::error:
            return "error";
        case Type::integer:
            return "integer";
        case Type::nil:
            return "nil";
        case Type::array:
            return "array";
    }
    return "?";
}

struct Reader::State {
    ReaderLimits limits;
    redisReader* reader = nullptr;
    // hiredis's default constructors (they build redisReply objects) and
    // our table that checks the limits before calling them.
    const redisReplyObjectFunctions* base = nullptr;
    redisReplyObjectFunctions checked{};
    std::size_t elements = 0;       // array elements announced in the current reply
    std::uint64_t fed = 0;          // bytes fed in total
    std::uint64_t reply_start = 0;  // stream offset where the current reply begins
    std::string refused;            // why a constructor refused (else hiredis says OOM)

    static State* of(const redisReadTask* task) { return static_cast<State*>(task->privdata); }

    std::uint64_t consumed() const { return fed - (reader->len - reader->pos); }
};

namespace {

int depth_of(const redisReadTask* task) {
    int depth = 0;
    for (const redisReadTask* t = task->parent; t != nullptr; t = t->parent)
        ++depth;
    return depth;
}

void* checked_string(const redisReadTask* task, char* str, size_t len) {
    auto* s = Reader::State::of(task);
    // hiredis skips the two octets after a bulk string's data unchecked;
    // RESP says CRLF, and anything else means we lost the framing. They
    // are in its buffer: it checked that len + 2 octets are there.
    if (task->type == REDIS_REPLY_STRING && (str[len] != '\r' || str[len + 1] != '\n')) {
        s->refused = "protocol error: bulk string not followed by CRLF";
        return nullptr;
    }
    return s->base->createString(task, str, len);
}

void* checked_array(const redisReadTask* task, int elements) {
    auto* s = Reader::State::of(task);
    // depth_of counts the arrays above this one; this one adds a level.
    if (depth_of(task) + 1 > s->limits.max_depth) {
        s->refused = "reply nested deeper than " + std::to_string(s->limits.max_depth) + " arrays";
        return nullptr;
    }
    if (elements < 0 || std::size_t(elements) > s->limits.max_elements - s->elements) {
        s->refused =
            "reply with more than " + std::to_string(s->limits.max_elements) + " array elements";
        return nullptr;
    }
    s->elements += std::size_t(elements);
    return s->base->createArray(task, elements);
}

void* checked_integer(const redisReadTask* task, long long value) {
    return Reader::State::of(task)->base->createInteger(task, value);
}

void* checked_nil(const redisReadTask* task) {
    return Reader::State::of(task)->base->createNil(task);
}

Value convert(const redisReply* r) {
    Value v;
    switch (r->type) {
        case REDIS_REPLY_STRING:
            v.type = Type::string;
            v.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            v.type = Type::status;
            v.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            v.type = Type::error;
            v.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            v.type = Type::integer;
            v.integer = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            v.type = Type::array;
            v.elements.reserve(r->elements);
            for (std::size_t i = 0; i < r->elements; ++i)
                v.elements.push_back(convert(r->element[i]));
            break;
        default:  // REDIS_REPLY_NIL
            v.type = Type::nil;
            break;
    }
    return v;
}

}  // namespace

Reader::Reader(ReaderLimits limits) : limits_(limits), state_(std::make_unique<State>()) {
    // hiredis keeps at most 9 read tasks: arrays nest 7 deep at most.
    if (limits_.max_depth > 7) limits_.max_depth = 7;
    if (limits_.max_depth < 1) limits_.max_depth = 1;
    state_->limits = limits_;
    state_->reader = redisReaderCreate();
    if (state_->reader == nullptr) throw std::bad_alloc();  // startup only: one per connection
    state_->base = state_->reader->fn;
    state_->checked = *state_->base;
    state_->checked.createString = checked_string;
    state_->checked.createArray = checked_array;
    state_->checked.createInteger = checked_integer;
    state_->checked.createNil = checked_nil;
    state_->reader->fn = &state_->checked;
    state_->reader->privdata = state_.get();
}

Reader::~Reader() {
    // redisReaderFree frees a partial reply through fn->freeObject, which
    // is still hiredis's own.
    redisReaderFree(state_->reader);
}

std::size_t Reader::buffered() const {
    return state_->reader->len - state_->reader->pos;
}

void Reader::feed(std::string_view bytes) {
    if (failed() || bytes.empty()) return;
    if (redisReaderFeed(state_->reader, bytes.data(), bytes.size()) != REDIS_OK) {
        error_ = "out of memory";
        return;
    }
    state_->fed += bytes.size();
}

Result<std::optional<Value>, std::string> Reader::next() {
    if (failed()) return unexpected(error_);
    State& s = *state_;
    void* raw = nullptr;
    if (redisReaderGetReply(s.reader, &raw) != REDIS_OK) {
        error_ =
            !s.refused.empty() ? s.refused : std::string("protocol error: ") + s.reader->errstr;
        return unexpected(error_);
    }
    if (raw == nullptr) {
        // Everything not yet returned belongs to the reply being read.
        if (s.fed - s.reply_start > limits_.max_reply_bytes) {
            error_ = "reply over " + std::to_string(limits_.max_reply_bytes) + " bytes";
            return unexpected(error_);
        }
        return std::optional<Value>{};
    }
    auto* reply = static_cast<redisReply*>(raw);
    const std::uint64_t end = s.consumed();
    const std::uint64_t size = end - s.reply_start;
    s.reply_start = end;
    s.elements = 0;
    if (size > limits_.max_reply_bytes) {
        freeReplyObject(reply);
        error_ = "reply over " + std::to_string(limits_.max_reply_bytes) + " bytes";
        return unexpected(error_);
    }
    Value v = convert(reply);
    freeReplyObject(reply);
    return std::optional<Value>(std::move(v));
}

std::string format_command(std::span<const std::string> argv) {
    if (argv.empty() || argv.size() > std::size_t(std::numeric_limits<int>::max())) return {};
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    ptrs.reserve(argv.size());
    lens.reserve(argv.size());
    for (const auto& a : argv) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
    }
    char* out = nullptr;
    const int n = redisFormatCommandArgv(&out, int(argv.size()), ptrs.data(), lens.data());
    if (n < 0 || out == nullptr) throw std::bad_alloc();  // hiredis fails only on allocation
    std::string s(out, std::size_t(n));
    redisFreeCommand(out);
    return s;
}

}  // namespace relaygate::resp
