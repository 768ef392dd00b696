# ctest -P script: fails when the link-boundary program depends on OpenCL or CLBlast at run time.
execute_process(COMMAND ldd ${EXE} OUTPUT_VARIABLE deps RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ldd ${EXE} failed (${rc})")
endif()
if(deps MATCHES "libOpenCL|libclblast")
  message(FATAL_ERROR "the CPU-only layers pulled in OpenCL or CLBlast:\n${deps}")
endif()
message(STATUS "no OpenCL or CLBlast among the run-time dependencies of ${EXE}")
