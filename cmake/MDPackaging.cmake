# install(), the exported targets, the package Config and version files, and a build-tree export.

include(CMakePackageConfigHelpers)
set(MD_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/manifold_diffusion")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/manifold_diffusionConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/manifold_diffusionConfig.cmake"
  INSTALL_DESTINATION "${MD_CMAKE_INSTALL_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/manifold_diffusionConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)

# Build-tree export: a consumer may point manifold_diffusion_DIR at the build directory.
export(TARGETS manifold_diffusion md_warnings
  NAMESPACE manifold_diffusion::
  FILE "${PROJECT_BINARY_DIR}/manifold_diffusionTargets.cmake")

if(MD_INSTALL)
  install(TARGETS manifold_diffusion md_warnings
    EXPORT manifold_diffusionTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/manifold_diffusion"
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT manifold_diffusionTargets
    NAMESPACE manifold_diffusion::
    DESTINATION "${MD_CMAKE_INSTALL_DIR}")
  install(FILES
    "${PROJECT_BINARY_DIR}/manifold_diffusionConfig.cmake"
    "${PROJECT_BINARY_DIR}/manifold_diffusionConfigVersion.cmake"
    DESTINATION "${MD_CMAKE_INSTALL_DIR}")
  install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/manifold_diffusion")
endif()
