// SpareDescriptor: the one descriptor the admin listener keeps in reserve
// lets exactly one more descriptor be opened when the process has none.
#include "gateway/server/descriptors.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

using relaygate::server::SpareDescriptor;

namespace {

// Lowers the soft RLIMIT_NOFILE for the test's lifetime, then restores it.
struct LowLimit {
    rlimit saved{};
    explicit LowLimit(rlim_t soft) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
        rlimit low = saved;
        low.rlim_cur = soft;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    }
    ~LowLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
};

int open_null() {
    return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

}  // namespace

TEST_CASE("a spare descriptor lets one open succeed when the process has none left") {
    // The highest descriptor now open, plus a little: the limit is reached
    // by the few opens below, whatever the test runner already holds.
    const int probe = open_null();
    REQUIRE(probe >= 0);
    ::close(probe);
    LowLimit limit(static_cast<rlim_t>(probe) + 8);

    SpareDescriptor spare;
    REQUIRE(spare.held());
    std::vector<int> taken;
    for (int i = 0; i < 64; ++i) {  // bounded: the limit is a few away
        const int fd = open_null();
        if (fd < 0) {
            CHECK(errno == EMFILE);
            break;
        }
        taken.push_back(fd);
    }
    REQUIRE(!taken.empty());
    CHECK(open_null() < 0);  // exhausted

    spare.release();
    CHECK_FALSE(spare.held());
    const int one = open_null();  // the spare's descriptor
    CHECK(one >= 0);
    CHECK(open_null() < 0);  // and only that one

    spare.acquire();  // none free: stays released, quietly
    CHECK_FALSE(spare.held());
    ::close(one);
    spare.acquire();  // one freed: taken again
    CHECK(spare.held());
    CHECK(open_null() < 0);

    for (int fd : taken)
        ::close(fd);
}
