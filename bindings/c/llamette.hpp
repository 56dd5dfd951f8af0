// llamette.hpp: C++17 RAII wrappers over the C ABI in llamette.h.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Header-only. Handles are move-only and free themselves; every failing call
// throws llamette::error (a std::runtime_error) carrying the status code and
// the library's message. Threading is the C API's: a model may be shared by
// any number of threads (std::shared_ptr-like copies are not needed: sessions
// and decoders keep their model alive inside the library), a session is used
// by one thread at a time, session::cancel() may be called from any thread.
//
//   llamette::model m = llamette::model::open_default();
//   llamette::session s(m, {256});
//   s.prefill(m.tokenize("Once upon a time", true));
//   s.generate(llamette::sampler_params::greedy(), 0,
//              [](uint32_t, std::string_view text) { std::cout << text; return true; });
#ifndef LLAMETTE_HPP
#define LLAMETTE_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llamette.h"

namespace llamette {

/// A failed call: the status code and the library's message.
class error : public std::runtime_error {
public:
    error(llamette_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    /// One of the LLAMETTE_STATUS_* codes.
    llamette_status status() const noexcept { return status_; }

private:
    llamette_status status_;
};

namespace detail {

/// Throws for a status other than OK, with `message` (or the thread's last
/// error) and the status name.
inline void check(llamette_status st, const char *message = nullptr) {
    if (st == LLAMETTE_STATUS_OK) return;
    std::string m = message && *message ? message : llamette_last_error();
    m += " (";
    m += llamette_status_str(st);
    m += ")";
    throw error(st, m);
}

}  // namespace detail

/// The version of the library linked at run time (major*1000000 + minor*1000 + patch).
inline std::uint32_t version() noexcept { return llamette_version(); }

/// Interleaves the quantized matrices of a GGUF file held in writable memory,
/// in place, for faster kernels (then open it with `model::open_memory`);
/// returns how many were rewritten. See `llamette_repack_in_place`.
inline std::size_t repack_in_place(void *data, std::size_t len) {
    std::size_t n = 0;
    detail::check(llamette_repack_in_place(static_cast<std::uint8_t *>(data), len, &n));
    return n;
}

/// Whether this CPU's kernels gain from `repack_in_place`.
inline bool kernels_interleaved() noexcept { return llamette_kernels_interleaved() != 0; }

/// Sampler settings (llama2.c's defaults), with named constructors.
struct sampler_params : llamette_sampler_params {
    sampler_params() : llamette_sampler_params() {
        detail::check(llamette_sampler_params_default(this));
    }
    /// Always the most likely token.
    static sampler_params greedy() {
        sampler_params p;
        p.temperature = 0.0f;
        return p;
    }
    /// Temperature and nucleus sampling with a seed (run.c's -t -p -s).
    static sampler_params sample(float temperature, float top_p, std::uint64_t seed) {
        sampler_params p;
        p.temperature = temperature;
        p.top_p = top_p;
        p.seed = seed;
        return p;
    }
};

/// A model: immutable, shareable between threads. Move-only.
class model {
public:
    /// Memory-maps a GGUF or llama2.c file; `tokenizer_path` may be empty.
    static model open_file(const std::string &path, const std::string &tokenizer_path = {}) {
        llamette_model *m = nullptr;
        detail::check(llamette_model_open_file(
            path.c_str(), tokenizer_path.empty() ? nullptr : tokenizer_path.c_str(), &m));
        return model(m);
    }

    /// Borrows caller memory (kept valid and unchanged while any handle made
    /// from this model lives).
    static model open_memory(const void *data, std::size_t len, const void *tokenizer = nullptr,
                             std::size_t tokenizer_len = 0) {
        llamette_model *m = nullptr;
        detail::check(llamette_model_open_memory(static_cast<const std::uint8_t *>(data), len,
                                                 static_cast<const std::uint8_t *>(tokenizer),
                                                 tokenizer_len, &m));
        return model(m);
    }

    /// The model compiled into the library (stories260K).
    static model open_default() {
        llamette_model *m = nullptr;
        detail::check(llamette_model_open_default(&m));
        return model(m);
    }

    model(model &&o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    model &operator=(model &&o) noexcept {
        if (this != &o) {
            llamette_model_free(m_);
            m_ = std::exchange(o.m_, nullptr);
        }
        return *this;
    }
    model(const model &) = delete;
    model &operator=(const model &) = delete;
    ~model() { llamette_model_free(m_); }

    /// Shapes, special tokens, sizes.
    llamette_model_info info() const {
        llamette_model_info i{};
        detail::check(llamette_model_get_info(m_, &i));
        return i;
    }

    /// Encodes UTF-8 text into token ids, BOS first if asked.
    std::vector<std::uint32_t> tokenize(std::string_view text, bool add_bos) const {
        std::size_t n = 0;
        llamette_status st =
            llamette_model_tokenize(m_, text.data(), text.size(), add_bos, nullptr, 0, &n);
        if (st != LLAMETTE_STATUS_BUFFER_TOO_SMALL) detail::check(st);
        std::vector<std::uint32_t> ids(n);
        detail::check(
            llamette_model_tokenize(m_, text.data(), text.size(), add_bos, ids.data(), n, &n));
        ids.resize(n);
        return ids;
    }

    /// The text of one token (a byte token gives its raw byte).
    std::string token_to_piece(std::uint32_t token) const {
        std::size_t n = 0;
        llamette_status st = llamette_model_token_to_piece(m_, token, nullptr, 0, &n);
        if (st != LLAMETTE_STATUS_BUFFER_TOO_SMALL) detail::check(st);
        std::string s(n, '\0');
        if (n > 0) detail::check(llamette_model_token_to_piece(m_, token, s.data(), n, &n));
        return s;
    }

    /// The C handle (still owned by this object).
    const llamette_model *get() const noexcept { return m_; }

private:
    explicit model(llamette_model *m) noexcept : m_(m) {}
    llamette_model *m_;
};

/// A streaming detokenizer: never splits a UTF-8 character. Move-only.
class decoder {
public:
    explicit decoder(const model &m) : max_(m.info().max_token_text_bytes) {
        detail::check(llamette_decoder_new(m.get(), &d_));
    }
    decoder(decoder &&o) noexcept : d_(std::exchange(o.d_, nullptr)), max_(o.max_) {}
    decoder &operator=(decoder &&o) noexcept {
        if (this != &o) {
            llamette_decoder_free(d_);
            d_ = std::exchange(o.d_, nullptr);
            max_ = o.max_;
        }
        return *this;
    }
    decoder(const decoder &) = delete;
    decoder &operator=(const decoder &) = delete;
    ~decoder() { llamette_decoder_free(d_); }

    /// The text `token` completes (possibly empty).
    std::string push(std::uint32_t token) {
        std::string s(max_, '\0');
        std::size_t n = 0;
        detail::check(llamette_decoder_push(d_, token, s.data(), s.size(), &n));
        s.resize(n);
        return s;
    }

    /// Ends the text (an incomplete character becomes U+FFFD).
    std::string flush() {
        char buf[8];
        std::size_t n = 0;
        detail::check(llamette_decoder_flush(d_, buf, sizeof buf, &n));
        return std::string(buf, n);
    }

private:
    llamette_decoder *d_ = nullptr;
    std::uint32_t max_;
};

/// One step's result: the token, whether it ends the text, and its text
/// (valid until the next call on the session).
struct step_result {
    std::uint32_t token;
    bool is_end;
    std::string_view text;
};

/// A session in memory the library allocates. Move-only; one thread at a time.
class session {
public:
    session(const model &m, const llamette_session_params &params) {
        detail::check(llamette_session_new(m.get(), &params, &s_));
    }
    session(const model &m, std::uint32_t context_length = 0)
        : session(m, llamette_session_params{context_length, LLAMETTE_KV_F32, 0}) {}
    session(session &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    session &operator=(session &&o) noexcept {
        if (this != &o) {
            llamette_session_free(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    session(const session &) = delete;
    session &operator=(const session &) = delete;
    ~session() { llamette_session_free(s_); }

    void prefill(const std::vector<std::uint32_t> &tokens) {
        check(llamette_session_prefill(s_, tokens.data(), tokens.size()));
    }

    step_result step(const llamette_sampler_params &params) {
        llamette_step_result r{};
        check(llamette_session_step(s_, &params, &r));
        return {r.token, r.is_end, std::string_view(r.text, r.text_len)};
    }

    /// Generates, calling `f(token, text)` for each token until it returns
    /// false, an end token, `max_tokens` (0: no limit) or the end of the
    /// context. An exception thrown by `f` stops generation and is rethrown
    /// here (it never crosses the C library).
    template <class F>
    llamette_generate_result generate(const llamette_sampler_params &params,
                                      std::uint32_t max_tokens, F &&f) {
        struct ctx_t {
            F *f;
            std::exception_ptr ex;
        } ctx{&f, nullptr};
        auto tramp = [](void *user, std::uint32_t token, const char *text,
                        std::size_t len) -> bool {
            auto *c = static_cast<ctx_t *>(user);
            try {
                return static_cast<bool>((*c->f)(token, std::string_view(text, len)));
            } catch (...) {
                c->ex = std::current_exception();
                return false;
            }
        };
        llamette_generate_result r{};
        llamette_status st = llamette_session_generate(s_, &params, max_tokens, tramp, &ctx, &r);
        if (ctx.ex) std::rethrow_exception(ctx.ex);
        check(st);
        return r;
    }

    void reset() { check(llamette_session_reset(s_)); }

    std::uint32_t position() {
        std::uint32_t p = 0;
        check(llamette_session_position(s_, &p));
        return p;
    }

    std::uint32_t context_length() {
        std::uint32_t n = 0;
        check(llamette_session_context_length(s_, &n));
        return n;
    }

    /// Any thread: stops the running (or next) prefill, step or generate.
    void cancel() { detail::check(llamette_session_cancel(s_)); }

    /// The built-in pool: 1 (default) inline, 0 one per core, n threads.
    void set_threads(std::uint32_t n) { check(llamette_session_set_threads(s_, n)); }

    /// A host thread pool (see llamette_parallel); nullptr for inline.
    void set_parallel(const llamette_parallel *p) { check(llamette_session_set_parallel(s_, p)); }

    llamette_session *get() noexcept { return s_; }

private:
    void check(llamette_status st) {
        if (st != LLAMETTE_STATUS_OK) detail::check(st, llamette_session_last_error(s_));
    }
    llamette_session *s_ = nullptr;
};

}  // namespace llamette

#endif  // LLAMETTE_HPP
