;;; nearline-eglot.el --- Nearline (local AI code completion) through Eglot  -*- lexical-binding: t; -*-

;; Copy-paste configuration, not a package.  Emacs 29+ (Eglot built in), or Emacs 28 with
;; Eglot from GNU ELPA (Debian: elpa-eglot).
;;
;;   (load "/path/to/nearline/editors/emacs/nearline-eglot.el")
;;   (setq nearline-command '("/path/to/nearline/.venv/bin/nearline" "serve"))  ; unless on PATH
;;   (add-hook 'python-mode-hook #'eglot-ensure)                                 ; or M-x eglot
;;
;; Eglot runs ONE language server per buffer: in the modes listed in `nearline-modes' Nearline
;; replaces the server Eglot would otherwise start (pyright, clangd, ...).  Use it for
;; languages where you have no other server, or trim `nearline-modes'.
;;
;; Suggestions come through `completion-at-point' (textDocument/completion; Eglot has no
;; inline completion): M-TAB / C-M-i, or company-mode / corfu, which use the same function.
;; Each item is the whole suggested line, replacing the word before point.
;;
;; Checked with Emacs 28.2 and Eglot 1.9 (Debian 12) in batch mode by the author of this file:
;; the server starts, the settings below reach it, and `completion-at-point' inserts the
;; suggestion.  Not checked interactively, nor with company/corfu.

(require 'eglot)
(require 'cl-lib)

(defgroup nearline nil
  "Nearline: local AI code completion over LSP."
  :group 'tools
  :prefix "nearline-")

(defcustom nearline-command '("nearline" "serve")
  "Command that starts the Nearline language server over stdio."
  :type '(repeat string))

(defcustom nearline-settings
  '(:completion (:enabled t))
  "Nearline's settings: a plist of nested camelCase keys (see the README's table).
Only what differs from the server's defaults, e.g.
  (:model (:id \"smollm2-135m-instruct-q4_1\" :threads 4)
   :completion (:maxTokens 32 :debounceMs 50))
Sent as initializationOptions and answered to workspace/configuration (section
\"nearline\").  Write false as `:json-false', not nil."
  :type 'plist)

(defcustom nearline-modes
  '(python-mode python-ts-mode
    js-mode js-ts-mode typescript-mode typescript-ts-mode tsx-ts-mode
    go-mode go-ts-mode rust-mode rust-ts-mode java-mode java-ts-mode
    c-mode c-ts-mode c++-mode c++-ts-mode lua-mode lua-ts-mode
    ruby-mode ruby-ts-mode sh-mode bash-ts-mode)
  "Major modes in which Eglot starts Nearline."
  :type '(repeat symbol))

(defclass nearline-eglot-server (eglot-lsp-server) ()
  :documentation "The Nearline language server.")

(cl-defmethod eglot-initialization-options ((_server nearline-eglot-server))
  nearline-settings)

;; Eglot sends workspace/didChangeConfiguration right after connecting, with
;; `eglot-workspace-configuration' (an empty object when that is unset) and answers the
;; server's workspace/configuration from it too.  Give Nearline its settings there as well
;; (unless the user configured a :nearline section), so both carry the same settings.
(defun nearline-eglot--workspace-configuration (orig server &rest args)
  (let ((val (apply orig server args)))
    (if (and (cl-typep server 'nearline-eglot-server)
             (not (plist-member val :nearline)))
        (append (list :nearline nearline-settings) val)
      val)))

(advice-add 'eglot--workspace-configuration-plist :around
            #'nearline-eglot--workspace-configuration)

;; A function, so that `nearline-command' is read when the server starts, not at load time.
(add-to-list 'eglot-server-programs
             `(,nearline-modes . ,(lambda (&optional _interactive)
                                    (cons 'nearline-eglot-server nearline-command))))

(defun nearline-status ()
  "Show the Nearline server's state (idle, loading, ready, error) and model."
  (interactive)
  (let* ((server (eglot-current-server))
         (res (and server
                   (jsonrpc-request server :workspace/executeCommand
                                    '(:command "nearline.status" :arguments [])))))
    (if (not res)
        (message "Nearline: no server in this buffer")
      (message "Nearline: %s%s, model %s"
               (plist-get res :state)
               (let ((err (plist-get res :error))) (if (stringp err) (format " (%s)" err) ""))
               (plist-get (plist-get res :engine) :model)))))

(provide 'nearline-eglot)
;;; nearline-eglot.el ends here
