/*
 * Logging to stderr.  Under the systemd journal (JOURNAL_STREAM set) each line
 * carries a <N> syslog priority prefix; otherwise an ISO 8601 timestamp.
 */
#ifndef CLAWSD_LOG_H
#define CLAWSD_LOG_H

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void	 log_init(void);
void	 log_set_level(enum log_level);
int	 log_enabled(enum log_level);
/* Parse "error", "warn", "info" or "debug"; -1 if none of them. */
int	 log_level_parse(const char *);
void	 log_msg(enum log_level, const char *, ...)
	    __attribute__((format(printf, 2, 3)));

#define log_error(...)	log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)	do {						\
	if (log_enabled(LOG_LEVEL_DEBUG))				\
		log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);			\
} while (0)

#endif
