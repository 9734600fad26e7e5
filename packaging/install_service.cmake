# Run by `cmake --install` (CMakeLists.txt sets PLUME_SOURCE_DIR, PLUME_BUILD_DIR, PLUME_BINDIR and
# PLUME_DOCDIR first). Paths are taken at install time, so that the unit names the plumed installed
# beside it whatever `--prefix` says. file(INSTALL) adds DESTDIR itself; the EXISTS check adds it
# by hand.
set(prefix "${CMAKE_INSTALL_PREFIX}")
# As GNUInstallDirs places them: /etc and /var for a /usr install, under <prefix> otherwise.
if(prefix STREQUAL "/usr")
  set(sysconfdir "/etc")
  set(localstatedir "/var")
else()
  set(sysconfdir "${prefix}/etc")
  set(localstatedir "${prefix}/var")
endif()
set(PLUME_BIN_DIR "${prefix}/${PLUME_BINDIR}")
set(PLUME_CONFIG_DIR "${sysconfdir}/plume")
set(PLUME_DOC_DIR "${prefix}/${PLUME_DOCDIR}")
set(PLUME_STATE_DIR "${localstatedir}/lib/plume")
configure_file("${PLUME_SOURCE_DIR}/packaging/plumed.service.in" "${PLUME_BUILD_DIR}/packaging/plumed.service" @ONLY)
file(INSTALL "${PLUME_BUILD_DIR}/packaging/plumed.service" DESTINATION "${prefix}/lib/systemd/system")

# The configuration is the operator's once installed: a later install never overwrites it.
set(config "$ENV{DESTDIR}${PLUME_CONFIG_DIR}/plumed.toml")
if(EXISTS "${config}")
  message(STATUS "Kept: ${config}")
else()
  configure_file("${PLUME_SOURCE_DIR}/packaging/plumed.toml.in" "${PLUME_BUILD_DIR}/packaging/plumed.toml" @ONLY)
  file(INSTALL "${PLUME_BUILD_DIR}/packaging/plumed.toml" DESTINATION "${PLUME_CONFIG_DIR}")
endif()
