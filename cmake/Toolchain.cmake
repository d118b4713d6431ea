# Compiler cache and linker. Both are optional: the build works without them, only slower.

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # BASEDIR makes paths relative to the repository root and NOHASHDIR keeps the working
  # directory out of the hash, so a fresh clone in another folder hits the same cache.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${CMAKE_SOURCE_DIR} CCACHE_NOHASHDIR=1
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${CCACHE_PROGRAM})
  message(STATUS "cmdistill: using ccache (${CCACHE_PROGRAM})")
endif()

find_program(LLD_PROGRAM ld.lld)
if(LLD_PROGRAM)
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fuse-ld=lld)
  check_cxx_source_compiles("int main() { return 0; }" CMDISTILL_HAVE_LLD)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(CMDISTILL_HAVE_LLD)
    add_link_options(-fuse-ld=lld)
    message(STATUS "cmdistill: linking with lld")
  endif()
endif()

# Warnings apply to our targets only (see cmdistill_apply_warnings); generated and third-party
# headers are included as SYSTEM so they do not drown our diagnostics.
set(CMDISTILL_WARNING_FLAGS -Wall -Wextra)
if(CMDISTILL_WERROR)
  list(APPEND CMDISTILL_WARNING_FLAGS -Werror)
endif()
