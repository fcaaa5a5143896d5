# Included by ctest (through md_tests_suites.cmake): one ctest test per GoogleTest suite of
# md_tests, named after the suite and labelled 'unit'.
if(NOT EXISTS "${MD_TESTS_EXE}")
  add_test(md_tests_NOT_BUILT "${MD_TESTS_EXE}")
  return()
endif()
execute_process(COMMAND "${MD_TESTS_EXE}" --gtest_list_tests
  OUTPUT_VARIABLE _md_list ERROR_VARIABLE _md_err RESULT_VARIABLE _md_rc TIMEOUT 120)
if(NOT _md_rc EQUAL 0)
  message(FATAL_ERROR "md_tests --gtest_list_tests failed (${_md_rc}): ${_md_err}")
endif()
string(REPLACE "\n" ";" _md_lines "${_md_list}")
foreach(_md_line IN LISTS _md_lines)
  # Suite lines start in column 0 and end in '.' (typed and parameterised suites contain '/').
  if(_md_line MATCHES "^([A-Za-z0-9_/]+)\\.( .*)?$")
    set(_md_suite "${CMAKE_MATCH_1}")
    add_test("${_md_suite}" "${MD_TESTS_EXE}" "--gtest_filter=${_md_suite}.*")
    set_tests_properties("${_md_suite}" PROPERTIES TIMEOUT 900 LABELS unit)
  endif()
endforeach()
