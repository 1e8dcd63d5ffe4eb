// The message component's public surface in one include: the header reader,
// its streaming collector and the address parser. Nothing here does I/O.
#pragma once

#include "gateway/message/address_parser.hpp"
#include "gateway/message/header_collector.hpp"
#include "gateway/message/header_reader.hpp"
