// The SMTP reply model and its wire format (RFC 5321 4.2, RFC 3463, RFC 2034).
// Owns how a reply is written; parsing upstream replies is reply_parser.hpp.
// Pure: builds strings, never writes to a socket.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "gateway/common/reason.hpp"

namespace relaygate::smtp {

// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF.
inline constexpr std::size_t kMaxReplyLine = 512;

// The text lines of a reply, as a sequence of strings. Most replies have
// one line: it is held in a member of its own, so a reply is made without
// an allocation for the list, and moved (a reply is moved a dozen times on
// its way from the relay's socket to the client) as one string and one
// vector, without boost::small_vector's element-wise move of its inline
// storage.
class ReplyLines {
  public:
    template <class Owner, class Value>
    class Iterator {
      public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = std::string;
        using difference_type = std::ptrdiff_t;
        using pointer = Value*;
        using reference = Value&;
        Iterator() = default;
        Iterator(Owner* owner, std::size_t i) : owner_(owner), i_(i) {}
        reference operator*() const { return (*owner_)[i_]; }
        pointer operator->() const { return &(*owner_)[i_]; }
        Iterator& operator++() {
            ++i_;
            return *this;
        }
        Iterator operator++(int) { return Iterator(owner_, i_++); }
        friend bool operator==(const Iterator& a, const Iterator& b) { return a.i_ == b.i_; }

      private:
        Owner* owner_ = nullptr;
        std::size_t i_ = 0;
    };
    using iterator = Iterator<ReplyLines, std::string>;
    using const_iterator = Iterator<const ReplyLines, const std::string>;

    ReplyLines() = default;
    ReplyLines(const ReplyLines&) = default;
    ReplyLines& operator=(const ReplyLines&) = default;
    // A moved-from list is empty, as a moved-from vector is.
    ReplyLines(ReplyLines&& o) noexcept
        : first_(std::move(o.first_)),
          rest_(std::move(o.rest_)),
          has_first_(std::exchange(o.has_first_, false)) {}
    ReplyLines& operator=(ReplyLines&& o) noexcept {
        first_ = std::move(o.first_);
        rest_ = std::move(o.rest_);
        o.rest_.clear();  // a vector moved from by assignment need not be empty
        has_first_ = std::exchange(o.has_first_, false);
        return *this;
    }
    ReplyLines(std::initializer_list<std::string> lines) {
        reserve(lines.size());
        for (const auto& l : lines)
            push_back(l);
    }

    std::size_t size() const { return has_first_ ? 1 + rest_.size() : 0; }
    bool empty() const { return !has_first_; }
    std::string& operator[](std::size_t i) { return i == 0 ? first_ : rest_[i - 1]; }
    const std::string& operator[](std::size_t i) const { return i == 0 ? first_ : rest_[i - 1]; }
    std::string& front() { return first_; }
    const std::string& front() const { return first_; }
    std::string& back() { return rest_.empty() ? first_ : rest_.back(); }
    const std::string& back() const { return rest_.empty() ? first_ : rest_.back(); }
    iterator begin() { return {this, 0}; }
    iterator end() { return {this, size()}; }
    const_iterator begin() const { return {this, 0}; }
    const_iterator end() const { return {this, size()}; }

    void reserve(std::size_t n) {
        if (n > 1) rest_.reserve(n - 1);
    }
    template <class... Args>
    std::string& emplace_back(Args&&... args) {
        if (!has_first_) {
            first_ = std::string(std::forward<Args>(args)...);
            has_first_ = true;
            return first_;
        }
        return rest_.emplace_back(std::forward<Args>(args)...);
    }
    void push_back(std::string line) { emplace_back(std::move(line)); }
    void clear() {
        first_.clear();
        rest_.clear();
        has_first_ = false;
    }

    friend bool operator==(const ReplyLines& a, const ReplyLines& b) {
        if (a.has_first_ != b.has_first_) return false;
        return !a.has_first_ || (a.first_ == b.first_ && a.rest_ == b.rest_);
    }

  private:
    std::string first_;
    std::vector<std::string> rest_;  // lines after the first
    bool has_first_ = false;
};

struct Reply {
    int code = 0;          // 200..599
    std::string enhanced;  // "2.1.0"; empty where RFC 2034 3 omits it (greeting, EHLO)
    // Text of each line, without code or enhanced code.
    ReplyLines lines;

    bool positive() const { return code >= 200 && code < 400; }
    bool tempfail() const { return code / 100 == 4; }
    bool permfail() const { return code / 100 == 5; }
    friend bool operator==(const Reply&, const Reply&) = default;
};

// "250-first\r\n250 last\r\n", with the enhanced code on every line
// (RFC 2034 4). Text is made safe for the wire: octets outside RFC 5321
// textstring (HTAB, %d32-126) become '?', and a line is cut so that it fits
// in 512 octets; an empty `lines` gives one line with no text.
std::string format_reply(const Reply& r);

// The reply for a reason from the reason table.
Reply make_reply(Reason r);

// True for "c.s.d" with c in {2,4,5} and s, d of 1-3 digits (RFC 3463 2).
bool is_enhanced_code(std::string_view s);

}  // namespace relaygate::smtp
