// Errors: one exception type carrying file:line and the library's own message. Code throws;
// main() catches, logs on the failing rank and ends every rank through abort_all().
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace pdegen {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Input the user can fix (deck, command line, files): main() prints it without a source location.
class UserError : public Error {
 public:
  using Error::Error;
};

// A file that could not be written or read (disk full, permissions, a failing device): the message
// names the file and the system's reason; main() prints it without a source location, exit 1.
class IoError : public Error {
 public:
  using Error::Error;
};

// A combination pdegen does not implement (e.g. tiles of a space-time problem): said plainly, exit
// code 3, never a pretence.
class NotImplemented : public UserError {
 public:
  using UserError::UserError;
};

// An allocation that failed (host or device memory): main() adds the deck keys that size the run.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& what);

// Ends all ranks (MPI_Abort when MPI is up, std::exit otherwise) so no rank waits forever.
[[noreturn]] void abort_all(int code);

}  // namespace pdegen

#define PDEGEN_THROW(...) ::pdegen::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

#define PDEGEN_CHECK(cond, ...)                                                                             \
  do {                                                                                                      \
    if (!(cond)) [[unlikely]]                                                                               \
      ::pdegen::throw_error(__FILE__, __LINE__, "check '" #cond "' failed: " + ::fmt::format(__VA_ARGS__)); \
  } while (0)

// oneDNN's C++ API reports failures as dnnl::error; this turns them into pdegen::Error with the
// call site and oneDNN's status and message.
#define DNNL_CHECK(expr)                                                                               \
  do {                                                                                                 \
    try {                                                                                              \
      expr;                                                                                            \
    } catch (const ::dnnl::error& e_) {                                                                \
      ::pdegen::throw_error(__FILE__, __LINE__,                                                        \
                            ::fmt::format("oneDNN call '{}' failed: {} (status {})", #expr, e_.what(), \
                                          static_cast<int>(e_.status)));                               \
    }                                                                                                  \
  } while (0)

// MPI calls: the error class string from MPI_Error_string.
#define MPI_CHECK(expr)                                                                       \
  do {                                                                                        \
    int rc_ = (expr);                                                                         \
    if (rc_ != 0 /* MPI_SUCCESS */) [[unlikely]]                                              \
      ::pdegen::throw_error(                                                                  \
          __FILE__, __LINE__,                                                                 \
          ::fmt::format("MPI call '{}' failed: {}", #expr, ::pdegen::mpi_error_string(rc_))); \
  } while (0)

namespace pdegen {
std::string mpi_error_string(int code);
}
