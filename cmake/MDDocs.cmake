# `cmake --build <dir> --target docs` builds the API reference with Doxygen when it is installed.
find_package(Doxygen QUIET)
if(DOXYGEN_FOUND AND MD_MASTER_PROJECT)
  configure_file("${PROJECT_SOURCE_DIR}/docs/Doxyfile.in" "${PROJECT_BINARY_DIR}/Doxyfile" @ONLY)
  add_custom_target(docs
    COMMAND ${DOXYGEN_EXECUTABLE} "${PROJECT_BINARY_DIR}/Doxyfile"
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
    COMMENT "API reference -> ${PROJECT_BINARY_DIR}/docs/html/index.html"
    VERBATIM)
endif()
