// RLIMIT_NOFILE handling with getrlimit/setrlimit (POSIX).
#include "gateway/server/descriptors.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace relaygate::server {

std::uint64_t raise_descriptor_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlimit raised = rl;
        raised.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    }
    return static_cast<std::uint64_t>(rl.rlim_cur);
}

std::uint64_t hard_descriptor_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    return static_cast<std::uint64_t>(rl.rlim_max);
}

void SpareDescriptor::acquire() {
    if (fd_ < 0) fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void SpareDescriptor::release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

}  // namespace relaygate::server
