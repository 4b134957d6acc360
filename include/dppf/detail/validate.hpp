#pragma once
// Validation of option aggregates: one message format everywhere,
// "dppf: <owner>: <field> <requirement> (got <value>)".

#include <sstream>
#include <string>

#include "../error.hpp"

namespace dppf::detail {

template <class V>
void require_option(bool ok, const char* owner, const char* field, const V& value, const char* requirement) {
  if (ok) return;
  std::ostringstream msg;
  msg << owner << ": " << field << ' ' << requirement << " (got " << value << ')';
  throw_invalid(msg.str());
}

}  // namespace dppf::detail
