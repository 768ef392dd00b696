// What the SVG writers share: text made safe for an SVG (XML) document.
#pragma once

#include <string>

namespace ttt {

// raw with & < > " ' escaped (and cleaned as clean_text does: no invalid UTF-8 or control characters).
std::string svg_escape(const std::string& raw);

}  // namespace ttt
