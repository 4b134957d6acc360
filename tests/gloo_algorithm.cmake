# gloo_communicator's all-reduce algorithm chosen by size (label gloo): the rule and both sides
# of its boundaries against a double reference.
if(TARGET dppf::gloo)
  dppf_add_test(test_gloo_algorithm test_gloo_algorithm.cpp LIBS dppf::gloo LABELS gloo)
  set_tests_properties(test_gloo_algorithm PROPERTIES TIMEOUT 120)
endif()
