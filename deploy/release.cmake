# The release build options, in one place: the Debian package
# (scripts/package) and the container image (deploy/Dockerfile) both
# configure with `cmake -C deploy/release.cmake`, and
# tests/deploy/check_deploy.sh checks that they still do.
set(CMAKE_BUILD_TYPE Release CACHE STRING "")
set(RELAYGATE_BENCH OFF CACHE BOOL "")
set(RELAYGATE_HARDENING ON CACHE BOOL "")
set(RELAYGATE_WERROR OFF CACHE BOOL "")
