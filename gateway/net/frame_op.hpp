// Asynchronous operations awaited inside the calling coroutine's own frame
// (Boost 1.74's asio::awaitable). `co_await op(use_awaitable)` runs
// async_result<use_awaitable_t>::initiate, itself a coroutine: a frame per
// operation, plus the operation block Asio allocates. Here the calling
// coroutine suspends itself (asio's await_transform for an initiation
// function: the function runs once the coroutine is suspended) and the
// completion handler resumes it; the operation block comes from a
// HandlerSlot the caller owns (the handler's associated allocator). A read
// or write on the data path then costs no heap allocation.
//
// This uses asio::detail::awaitable_thread, as use_awaitable's own handler
// does; Boost 1.74 is the project's fixed dependency.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

#include "gateway/net/asio.hpp"

namespace relaygate::net {

// Memory for the operation block of one operation at a time. Asio frees the
// block before it calls the handler, so the next operation started from the
// resumed coroutine finds the slot free. A larger or concurrent request
// falls back to the heap.
class HandlerSlot {
  public:
    HandlerSlot() = default;
    HandlerSlot(const HandlerSlot&) = delete;
    HandlerSlot& operator=(const HandlerSlot&) = delete;

    void* allocate(std::size_t size) {
        if (!busy_ && size <= sizeof(storage_)) {
            busy_ = true;
            return storage_;
        }
        return ::operator new(size);
    }
    void deallocate(void* p) noexcept {
        if (p == storage_) {
            busy_ = false;
            return;
        }
        ::operator delete(p);
    }

  private:
    // A TCP read or write block with this handler is ~200 octets; TLS adds
    // its composed operation's state.
    alignas(std::max_align_t) unsigned char storage_[640];
    bool busy_ = false;
};

template <class T>
class SlotAllocator {
  public:
    using value_type = T;
    explicit SlotAllocator(HandlerSlot& slot) noexcept : slot_(&slot) {}
    template <class U>
    SlotAllocator(const SlotAllocator<U>& other) noexcept : slot_(other.slot()) {}
    T* allocate(std::size_t n) { return static_cast<T*>(slot_->allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t) noexcept { slot_->deallocate(p); }
    HandlerSlot* slot() const noexcept { return slot_; }
    friend bool operator==(const SlotAllocator& a, const SlotAllocator& b) {
        return a.slot_ == b.slot_;
    }
    friend bool operator!=(const SlotAllocator& a, const SlotAllocator& b) { return !(a == b); }

  private:
    HandlerSlot* slot_;
};

namespace detail {

using Thread = asio::detail::awaitable_thread<asio::any_io_executor>;

// The completion handler: owns the suspended coroutine stack (as
// use_awaitable's handler does), hands the results to `done`, then resumes
// the coroutine that started the operation.
template <class Done>
class Resume : public Thread {
  public:
    Resume(Thread* suspended, HandlerSlot& slot, Done done)
        : Thread(std::move(*suspended)), slot_(&slot), done_(std::move(done)) {}

    using allocator_type = SlotAllocator<void>;
    allocator_type get_allocator() const noexcept { return allocator_type(*slot_); }

    template <class... Args>
    void operator()(Args&&... args) {
        done_(std::forward<Args>(args)...);
        this->top_of_stack_->attach_thread(this);
        this->pump();
    }

  private:
    HandlerSlot* slot_;
    Done done_;
};

}  // namespace detail

// `co_await in_frame(slot, start, done)` inside an asio::awaitable coroutine:
// start(handler) initiates the operation; done(results...) receives its
// completion arguments just before the coroutine resumes. `start` and
// `done` should capture only pointers and references (trivially
// destructible: g++ 12 mishandles temporaries with destructors in a
// co_await expression).
template <class Start, class Done>
auto in_frame(HandlerSlot& slot, Start start, Done done) {
    return [&slot, start, done](auto* frame) mutable -> detail::Thread* {
        start(detail::Resume<Done>(frame->detach_thread(), slot, std::move(done)));
        return nullptr;
    };
}

}  // namespace relaygate::net
