# Philox4x32-10 and the random fills (known-answer vectors, executor independence) and the
# sharpness estimators (closed forms on quadratics, executor independence, bad input).
dppf_add_test(test_philox test_philox.cpp LABELS sharpness)
dppf_add_test(test_sharpness test_sharpness.cpp LABELS sharpness)

# The same numbers through dppf::thrust on Thrust's OpenMP and cpp systems, when tests/thrust.cmake
# found Thrust (deferred: that file is read after this one).
function(dppf_add_sharpness_thrust_test)
  if(TARGET dppf_thrust_omp)
    dppf_add_test(test_sharpness_thrust test_sharpness_thrust.cpp LIBS dppf_thrust_omp LABELS sharpness thrust)
    set_tests_properties(test_sharpness_thrust PROPERTIES ENVIRONMENT OMP_NUM_THREADS=2)
  endif()
endfunction()
cmake_language(DEFER CALL dppf_add_sharpness_thrust_test)
