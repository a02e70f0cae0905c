;;; emacs_check.el --- batch check of editors/emacs/nearline-eglot.el  -*- lexical-binding: t; -*-
;; Not run by pytest (Emacs is no dependency). By hand:
;;   NEARLINE_CHECK_FILE=/tmp/p/inventory/partial.py NEARLINE_CHECK_OUT=/tmp/out.json \
;;   NEARLINE_CHECK_CMD=/path/to/.venv/bin/nearline \
;;   emacs --batch -l /usr/share/emacs/site-lisp/elpa/eglot-1.9/eglot-autoloads.el \
;;         -l editors/emacs/nearline-eglot.el -l tests/editors/emacs_check.el
;; The file's last line is half typed; point goes to its end.
(require 'json)
(setq nearline-command (list (getenv "NEARLINE_CHECK_CMD") "serve"))
(setq nearline-settings
      '(:model (:id "smollm2-135m-instruct-q4_1" :threads 1)
        :completion (:debounceMs 0 :timeoutMs 30000 :maxTokens 16)
        :context (:budgetTokens 512)))
(setq eglot-sync-connect 30)
(let* ((out (getenv "NEARLINE_CHECK_OUT"))
       (result nil)
       (t0 (float-time)))
  (condition-case err
      (progn
        (find-file (getenv "NEARLINE_CHECK_FILE"))
        (push (cons 'major_mode (symbol-name major-mode)) result)
        (eglot-ensure)
        ;; eglot-ensure connects from post-command-hook / a timer; batch has no command loop.
        (let ((deadline (+ (float-time) 30)))
          (while (and (not (eglot-current-server)) (< (float-time) deadline))
            (run-hooks 'post-command-hook)
            (accept-process-output nil 0.2)))
        (let ((server (eglot-current-server)))
          (unless server (error "no eglot server after 30 s"))
          (push (cons 'server_class (symbol-name (eieio-object-class server))) result)
          (let (st (deadline (+ (float-time) 30)))
            (while (progn
                     (setq st (jsonrpc-request server :workspace/executeCommand
                                               '(:command "nearline.status" :arguments [])))
                     (and (not (member (plist-get st :state) '("ready" "error")))
                          (< (float-time) deadline)))
              (accept-process-output nil 0.2))
            (push (cons 'state (plist-get st :state)) result)
            (push (cons 'model (plist-get (plist-get (plist-get st :settings) :model) :id)) result))
          (goto-char (point-max))
          (skip-chars-backward "\n")
          (let ((before (buffer-substring (line-beginning-position) (point))))
            (push (cons 'before before) result)
            (completion-at-point)
            (push (cons 'after (buffer-substring (line-beginning-position) (line-end-position)))
                  result))))
    (error (push (cons 'error (error-message-string err)) result)))
  (push (cons 'seconds (- (float-time) t0)) result)
  (with-temp-file out (insert (json-encode result)))
  (kill-emacs (if (assq 'error result) 1 0)))
