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

#include <limits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
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

/// Sampler settings (llama2.c's defaults, from the library), with named
/// constructors. Every struct of the C ABI starts with its `struct_size`:
/// the wrappers set it.
struct sampler_params : llamette_sampler_params {
    sampler_params() : llamette_sampler_params() {
        struct_size = sizeof(llamette_sampler_params);
        detail::check(llamette_sampler_params_default(this));
    }
    /// Always the most likely token.
    static sampler_params greedy() {
        sampler_params p;
        p.temperature = 0.0f;
        return p;
    }
    /// Throws llamette::error (INVALID_ARGUMENT, the message naming the
    /// field) for a setting out of range, as a step or generate would.
    void validate() const { detail::check(llamette_sampler_params_validate(this)); }
    /// Temperature and nucleus sampling with a seed (run.c's -t -p -s).
    static sampler_params sample(float temperature, float top_p, std::uint64_t seed) {
        sampler_params p;
        p.temperature = temperature;
        p.top_p = top_p;
        p.seed = seed;
        return p;
    }
};

/// One message of a dialog (`llamette_chat_message`, owning its text).
struct message {
    std::uint32_t role;  ///< LLAMETTE_ROLE_*
    std::string content;

    bool operator==(const message &o) const { return role == o.role && content == o.content; }
    bool operator!=(const message &o) const { return !(*this == o); }
};

/// Session sizing (`llamette_session_params`), struct_size set: a context
/// length (0: the model's), a KV cache type, a prompt batch (0: 32).
struct session_params : llamette_session_params {
    explicit session_params(std::uint32_t context = 0, llamette_kv_type kv = LLAMETTE_KV_F32,
                            std::uint32_t batch_size = 0)
        : llamette_session_params() {
        struct_size = sizeof(llamette_session_params);
        context_length = context;
        kv_type = kv;
        batch = batch_size;
    }
};

/// Chat options (`llamette_chat_options`), struct_size set.
struct chat_options : llamette_chat_options {
    chat_options() : llamette_chat_options() { struct_size = sizeof(llamette_chat_options); }
};

/// What `llamette_session_generate_ex` does beyond sampling: a token limit,
/// stop strings, which end tokens stop.
struct generate_options {
    std::uint32_t max_tokens = 0;        ///< 0: no limit
    std::uint32_t flags = 0;             ///< LLAMETTE_GENERATE_*
    std::vector<std::string> stop_strings;  ///< at most LLAMETTE_MAX_STOP_STRINGS
};

namespace detail {

/// The C view of a dialog (pointing into `dialog`'s strings).
inline std::vector<llamette_chat_message> native_dialog(const std::vector<message> &dialog) {
    std::vector<llamette_chat_message> v(dialog.size());
    for (std::size_t i = 0; i < dialog.size(); i++) {
        v[i].struct_size = sizeof(llamette_chat_message);
        v[i].role = dialog[i].role;
        v[i].content = dialog[i].content.data();
        v[i].content_len = dialog[i].content.size();
    }
    return v;
}

/// Reads the dialog kept in a saved state.
inline std::vector<message> saved_dialog(const void *data, std::size_t len) {
    std::vector<message> out;
    for (std::size_t i = 0;; i++) {
        llamette_chat_message m{};
        m.struct_size = sizeof m;
        llamette_status st = llamette_chat_state_message(data, len, i, &m);
        if (st == LLAMETTE_STATUS_INVALID_ARGUMENT) break;  // past the last one
        check(st);
        out.push_back({m.role, std::string(m.content, m.content_len)});
    }
    return out;
}

}  // namespace detail

/// A model: immutable, shareable between threads. Move-only.
class model {
public:
    /// Memory-maps a GGUF or llama2.c file; `tokenizer_path` may be empty.
    /// With `flags = LLAMETTE_OPEN_FOR_SPEED` the library loads it for speed
    /// instead (a copy in its own memory, matrices interleaved where this
    /// CPU's kernels gain from it: see `llamette_model_open_file_ex`;
    /// `info().owned_bytes` is what it costs).
    static model open_file(const std::string &path, const std::string &tokenizer_path = {},
                           std::uint32_t flags = 0) {
        llamette_model *m = nullptr;
        detail::check(llamette_model_open_file_ex(
            path.c_str(), tokenizer_path.empty() ? nullptr : tokenizer_path.c_str(), flags, &m));
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
        i.struct_size = sizeof i;
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

    /// The chat format the chat functions use for this model
    /// (LLAMETTE_CHAT_FORMAT_LLAMA2 or LLAMETTE_CHAT_FORMAT_TEMPLATE).
    std::uint32_t chat_format(const chat_options &options = {}) const {
        std::uint32_t f = 0;
        detail::check(llamette_model_chat_format(m_, &options, &f));
        return f;
    }

    /// The token ids of `dialog` in the model's chat format.
    std::vector<std::uint32_t> chat_encode(const std::vector<message> &dialog,
                                           const chat_options &options = {}) const {
        auto d = detail::native_dialog(dialog);
        std::size_t n = 0;
        llamette_status st = llamette_chat_encode(m_, d.data(), d.size(), &options, nullptr, 0, &n);
        if (st != LLAMETTE_STATUS_BUFFER_TOO_SMALL) detail::check(st);
        std::vector<std::uint32_t> ids(n);
        detail::check(llamette_chat_encode(m_, d.data(), d.size(), &options, ids.data(), n, &n));
        ids.resize(n);
        return ids;
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
        : session(m, session_params(context_length)) {}
    session(session &&o) noexcept
        : s_(std::exchange(o.s_, nullptr)), hook_(std::move(o.hook_)) {}
    session &operator=(session &&o) noexcept {
        if (this != &o) {
            llamette_session_free(s_);
            s_ = std::exchange(o.s_, nullptr);
            hook_ = std::move(o.hook_);
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
        r.struct_size = sizeof r;
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
            std::remove_reference_t<F> *f;
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
        r.struct_size = sizeof r;
        llamette_status st = llamette_session_generate(s_, &params, max_tokens, tramp, &ctx, &r);
        if (ctx.ex) std::rethrow_exception(ctx.ex);
        check(st);
        return r;
    }

    /// As `generate`, with `options`: a token limit, stop strings (the text
    /// before one reaches `f`, the stop string never does) and which end
    /// tokens stop. Held-back text may come at the end with
    /// LLAMETTE_NO_TOKEN.
    template <class F>
    llamette_generate_result generate(const llamette_sampler_params &params,
                                      const generate_options &options, F &&f) {
        std::string stops;
        for (const std::string &s : options.stop_strings) {
            stops += s;
            stops += '\0';
        }
        llamette_generate_options o{};
        o.struct_size = sizeof o;
        o.max_tokens = options.max_tokens;
        o.flags = options.flags;
        o.stop_strings = stops.empty() ? nullptr : stops.data();
        o.stop_strings_len = stops.size();
        struct ctx_t {
            std::remove_reference_t<F> *f;
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
        r.struct_size = sizeof r;
        llamette_status st = llamette_session_generate_ex(s_, &params, &o, tramp, &ctx, &r);
        if (ctx.ex) std::rethrow_exception(ctx.ex);
        check(st);
        return r;
    }

    /// Brings the session to the end of `dialog`'s encoding (the prefix it
    /// holds is kept), ready to generate the reply.
    llamette_chat_prefill_result chat_prefill(const std::vector<message> &dialog,
                                              const chat_options &options = {}) {
        auto d = detail::native_dialog(dialog);
        llamette_chat_prefill_result r{};
        r.struct_size = sizeof r;
        check(llamette_chat_prefill(s_, d.data(), d.size(), &options, &r));
        return r;
    }

    /// Forgets the positions from `position` on, and the pending token.
    void truncate(std::uint32_t position) { check(llamette_session_truncate(s_, position)); }

    /// A copy of the logits predicting the next token (before bias and hook).
    std::vector<float> logits() {
        const float *p = nullptr;
        std::size_t n = 0;
        check(llamette_session_logits(s_, &p, &n));
        return std::vector<float>(p, p + n);
    }

    /// Adds `biases[i]` to token `tokens[i]` before every sampling
    /// (-INFINITY bans); replaces an earlier bias.
    void set_logit_bias(const std::vector<std::uint32_t> &tokens, const std::vector<float> &biases) {
        if (tokens.size() != biases.size())
            throw error(LLAMETTE_STATUS_INVALID_ARGUMENT, "tokens and biases differ in length");
        check(llamette_session_set_logit_bias(s_, tokens.data(), biases.data(), tokens.size()));
    }

    /// Bans `tokens` (a bias of -infinity each), replacing an earlier bias.
    void ban_tokens(const std::vector<std::uint32_t> &tokens) {
        set_logit_bias(tokens, std::vector<float>(tokens.size(), -std::numeric_limits<float>::infinity()));
    }

    /// Removes the logit bias.
    void clear_logit_bias() { check(llamette_session_set_logit_bias(s_, nullptr, nullptr, 0)); }

    /// Calls `f(float *logits, size_t n)` before every sampling, after the
    /// bias; an empty function removes it. `f` must not throw (an exception
    /// would cross the C library: it terminates instead).
    void set_logits_hook(std::function<void(float *, std::size_t)> f) {
        if (!f) {
            check(llamette_session_set_logits_hook(s_, nullptr, nullptr));
            hook_.reset();
            return;
        }
        auto h = std::make_unique<std::function<void(float *, std::size_t)>>(std::move(f));
        auto tramp = [](void *user, float *logits, std::size_t n) noexcept {
            (*static_cast<std::function<void(float *, std::size_t)> *>(user))(logits, n);
        };
        check(llamette_session_set_logits_hook(s_, tramp, h.get()));
        hook_ = std::move(h);
    }

    /// Saves the session (and `dialog`, if any) as a versioned, checksummed blob.
    std::vector<std::uint8_t> save_state(const std::vector<message> &dialog = {}) {
        auto d = detail::native_dialog(dialog);
        std::size_t n = 0;
        check(llamette_chat_state_size(s_, d.data(), d.size(), &n));
        std::vector<std::uint8_t> blob(n);
        check(llamette_chat_state_save(s_, d.data(), d.size(), blob.data(), n, &n));
        blob.resize(n);
        return blob;
    }

    /// Restores a blob of `save_state` and returns the dialog kept in it.
    /// A corrupted (LLAMETTE_STATUS_BAD_STATE) or foreign
    /// (LLAMETTE_STATUS_STATE_MISMATCH) blob throws and changes nothing.
    std::vector<message> load_state(const void *data, std::size_t len) {
        std::size_t n = 0;
        check(llamette_chat_state_load(s_, data, len, &n));
        return detail::saved_dialog(data, len);
    }
    std::vector<message> load_state(const std::vector<std::uint8_t> &blob) {
        return load_state(blob.data(), blob.size());
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

    /// A host thread pool (see llamette_parallel: set its struct_size, or
    /// start from LLAMETTE_PARALLEL_INIT); nullptr for inline.
    void set_parallel(const llamette_parallel *p) { check(llamette_session_set_parallel(s_, p)); }

    llamette_session *get() noexcept { return s_; }

private:
    void check(llamette_status st) {
        if (st != LLAMETTE_STATUS_OK) detail::check(st, llamette_session_last_error(s_));
    }
    llamette_session *s_ = nullptr;
    std::unique_ptr<std::function<void(float *, std::size_t)>> hook_;
};

/// A conversation: a session, the dialog, and turns that reuse the KV cache.
class chat {
public:
    chat(const model &m, const std::string &system = {}, std::uint32_t context_length = 0)
        : s_(m, context_length) {
        if (!system.empty()) dialog_.push_back({LLAMETTE_ROLE_SYSTEM, system});
    }

    /// Sends a user message and generates the reply, calling `f(token,
    /// text)` for each token; returns the reply, which joins the dialog. A
    /// refused or too long message, or refused options, throw and change
    /// nothing; a cancelled reply (or one whose callback threw) keeps what
    /// was produced in the dialog.
    template <class F>
    std::string send(const std::string &user, const llamette_sampler_params &params,
                     const generate_options &options, F &&f) {
        dialog_.push_back({LLAMETTE_ROLE_USER, user});
        try {
            last_prefill_ = s_.chat_prefill(dialog_, options_);
        } catch (...) {
            dialog_.pop_back();
            throw;
        }
        if (last_prefill_.dropped > 0) {
            std::size_t first = dialog_.front().role == LLAMETTE_ROLE_SYSTEM ? 1 : 0;
            dialog_.erase(dialog_.begin() + first, dialog_.begin() + first + last_prefill_.dropped);
        }
        std::string reply;
        auto on_token = [&](std::uint32_t t, std::string_view text) {
            reply.append(text);
            return f(t, text);
        };
        try {
            last_result_ = s_.generate(params, options, on_token);
        } catch (const error &e) {
            // Refused options (a bad stop string): the turn did not happen.
            if (reply.empty() && e.status() != LLAMETTE_STATUS_CANCELLED) {
                dialog_.pop_back();
                throw;
            }
            dialog_.push_back({LLAMETTE_ROLE_ASSISTANT, reply});
            throw;
        } catch (...) {
            // The callback threw: what was produced stays in the dialog.
            dialog_.push_back({LLAMETTE_ROLE_ASSISTANT, reply});
            throw;
        }
        dialog_.push_back({LLAMETTE_ROLE_ASSISTANT, reply});
        return reply;
    }

    /// As above, without a callback.
    std::string send(const std::string &user, const llamette_sampler_params &params,
                     const generate_options &options = {}) {
        return send(user, params, options, [](std::uint32_t, std::string_view) { return true; });
    }

    /// Keeps the first `n` messages (the cache is cut where the next turn differs).
    void rewind(std::size_t n) {
        if (n < dialog_.size()) dialog_.resize(n);
    }

    /// The conversation as one blob (session and dialog).
    std::vector<std::uint8_t> save() { return s_.save_state(dialog_); }

    /// Restores `save`'s blob; throws and changes nothing when it is not one of this model's.
    void load(const std::vector<std::uint8_t> &blob) { dialog_ = s_.load_state(blob); }

    const std::vector<message> &messages() const noexcept { return dialog_; }
    chat_options &options() noexcept { return options_; }
    const llamette_chat_prefill_result &last_prefill() const noexcept { return last_prefill_; }
    const llamette_generate_result &last_result() const noexcept { return last_result_; }
    llamette::session &session() noexcept { return s_; }

private:
    llamette::session s_;
    std::vector<message> dialog_;
    chat_options options_;
    llamette_chat_prefill_result last_prefill_{};
    llamette_generate_result last_result_{};
};

}  // namespace llamette

#endif  // LLAMETTE_HPP
