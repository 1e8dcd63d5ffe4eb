# The Debian package (CPack DEB), included by the top-level CMakeLists.txt:
#
#   cmake -C deploy/release.cmake -S . -B build-package
#   cmake --build build-package --target relaygate relaygate_package_files
#   (cd build-package && cpack -G DEB)        -> relaygate_<version>_<arch>.deb
#
# Runtime dependencies come from the binary (dpkg-shlibdeps); the unit,
# maintainer scripts, config and starter policy are in deploy/debian/. The
# install rules below are the package's file list (tests/package/test_deb.sh
# checks it on an installed package).

set(RELAYGATE_SOURCE_URL "https://git.example.com/relaygate/relaygate"
    CACHE STRING "source repository URL (Debian copyright, OCI image labels)")
set(RELAYGATE_DEB_DIR ${PROJECT_SOURCE_DIR}/deploy/debian)
set(RELAYGATE_DEB_BUILD ${PROJECT_BINARY_DIR}/deb)
set(RELAYGATE_DEB_VERSION ${PROJECT_VERSION})

# `make install` must not build everything (tests, benchmarks) first: the
# package needs only relaygate and relaygate_package_files.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

# Man pages (docs/man, rendered by scripts/manpages from `relaygate --help`
# and README.md) and the changelog, gzipped as Debian wants them (-n: no
# name or timestamp, so the package is reproducible).
set(RELAYGATE_MAN_PAGES relaygate.8 relaygate.json.5 relaygate-policy.5)
configure_file(${RELAYGATE_DEB_DIR}/changelog.in ${RELAYGATE_DEB_BUILD}/changelog @ONLY)
configure_file(${RELAYGATE_DEB_DIR}/copyright ${RELAYGATE_DEB_BUILD}/copyright @ONLY)
set(relaygate_gz_outputs)
foreach(page ${RELAYGATE_MAN_PAGES} changelog)
  if(page STREQUAL "changelog")
    set(src ${RELAYGATE_DEB_BUILD}/changelog)
  else()
    set(src ${PROJECT_SOURCE_DIR}/docs/man/${page})
  endif()
  add_custom_command(OUTPUT ${RELAYGATE_DEB_BUILD}/${page}.gz
                     COMMAND gzip -9 -n -c ${src} > ${RELAYGATE_DEB_BUILD}/${page}.gz
                     DEPENDS ${src} VERBATIM)
  list(APPEND relaygate_gz_outputs ${RELAYGATE_DEB_BUILD}/${page}.gz)
endforeach()
add_custom_target(relaygate_package_files ALL DEPENDS ${relaygate_gz_outputs})

# The file list. Absolute destinations are the system's (/etc, /lib, /var);
# the rest is under CPACK_PACKAGING_INSTALL_PREFIX (/usr).
install(FILES ${RELAYGATE_DEB_DIR}/relaygate.service DESTINATION /lib/systemd/system)
install(FILES ${RELAYGATE_DEB_DIR}/config.json ${RELAYGATE_DEB_DIR}/policy.json
        DESTINATION /etc/relaygate)
install(FILES ${RELAYGATE_DEB_DIR}/logrotate DESTINATION /etc/logrotate.d RENAME relaygate)
install(DIRECTORY DESTINATION /var/lib/relaygate)
install(DIRECTORY DESTINATION /var/log/relaygate)
install(FILES ${RELAYGATE_DEB_BUILD}/relaygate.8.gz DESTINATION share/man/man8)
install(FILES ${RELAYGATE_DEB_BUILD}/relaygate.json.5.gz ${RELAYGATE_DEB_BUILD}/relaygate-policy.5.gz
        DESTINATION share/man/man5)
install(FILES ${PROJECT_SOURCE_DIR}/policy/schema/policy.schema.json
        DESTINATION share/relaygate/schema)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/policy/examples/ DESTINATION share/doc/relaygate/examples)
install(FILES ${RELAYGATE_DEB_BUILD}/copyright ${RELAYGATE_DEB_BUILD}/changelog.gz
        DESTINATION share/doc/relaygate)
install(FILES ${RELAYGATE_DEB_DIR}/lintian-overrides DESTINATION share/lintian/overrides
        RENAME relaygate)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME relaygate)
set(CPACK_PACKAGE_VENDOR "relaygate contributors")
set(CPACK_PACKAGE_CONTACT "relaygate maintainers <relaygate@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SMTP relay-authorization gateway in front of a signing relay")
# The extended description (CPack indents it and turns the empty line into " .").
set(CPACK_PACKAGE_DESCRIPTION
    "relaygate is an SMTP proxy placed in front of an outbound signing relay
(Postfix with OpenDKIM, rspamd, a vendor MTA). For every message it proves
which customer is sending (TLS client certificate, SMTP AUTH, a provider
tenant id corroborated by the provider's DKIM signature, or a dedicated
network) and checks that the envelope and header sender domains belong to
that customer before the signer sees the message, so shared provider
networks cannot send as anyone they like (EchoSpoofing).

This package installs the gateway, a hardened systemd unit, a starter
configuration and policy in /etc/relaygate, and the manual pages.")
set(CPACK_DEBIAN_PACKAGE_VERSION ${RELAYGATE_DEB_VERSION})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE ${RELAYGATE_SOURCE_URL})
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Merged with what dpkg-shlibdeps finds: adduser for postinst; libpsl
# prefers the system's public suffix list when it is newer than its own.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "publicsuffix, logrotate")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postfix, opendkim, swaks")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${RELAYGATE_DEB_DIR}/conffiles ${RELAYGATE_DEB_DIR}/postinst
    ${RELAYGATE_DEB_DIR}/prerm ${RELAYGATE_DEB_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES TRUE)
include(CPack)
