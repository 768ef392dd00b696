# cmake --install: libtttcl, the public headers (include/ttt), the tools, a
# CMake package (find_package(tttcl) -> tttcl::tttcl) and a pkg-config file.
include(CMakePackageConfigHelpers)
install(TARGETS tttcl LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ttt DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
set(TTT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tttcl)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tttclConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tttclConfig.cmake INSTALL_DESTINATION ${TTT_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tttclConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tttclConfig.cmake ${PROJECT_BINARY_DIR}/tttclConfigVersion.cmake
  DESTINATION ${TTT_CMAKE_DIR})
# ${pcfiledir} up to the prefix: one ".." per component of LIBDIR/pkgconfig.
file(RELATIVE_PATH TTT_PC_UP /x/${CMAKE_INSTALL_LIBDIR}/pkgconfig /x)
configure_file(${PROJECT_SOURCE_DIR}/cmake/tttcl.pc.in ${PROJECT_BINARY_DIR}/tttcl.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tttcl.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
