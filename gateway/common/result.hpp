// Result<T, E>: a value or a typed error, for the data path where exceptions
// are not used (g++ 12 in C++20 mode has no std::expected).
// Must stay header-only and free of I/O.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace relaygate {

template <class E>
struct Unexpected {
    E error;
};

template <class E>
Unexpected<E> unexpected(E e) {
    return Unexpected<E>{std::move(e)};
}

template <class T, class E>
class [[nodiscard]] Result {
  public:
    // Two overloads rather than one by value: a by-value parameter would
    // cost one more move of T on every `return value;`.
    Result(T&& value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(const T& value) : v_(std::in_place_index<0>, value) {}
    Result(Unexpected<E> e) : v_(std::in_place_index<1>, std::move(e.error)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & {
        assert(ok());
        return std::get<0>(v_);
    }
    const T& value() const& {
        assert(ok());
        return std::get<0>(v_);
    }
    T&& value() && {
        assert(ok());
        return std::get<0>(std::move(v_));
    }
    const E& error() const {
        assert(!ok());
        return std::get<1>(v_);
    }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

  private:
    std::variant<T, E> v_;
};

}  // namespace relaygate
