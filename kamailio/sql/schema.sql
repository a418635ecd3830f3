-- sipguard schema. Safe to run on an empty database and on one that already holds the
-- post's tables and data: it creates what is missing, widens what is too narrow, adds the
-- indexes the post's tables lack, and keeps every row.
--   mysql kamailio < kamailio/sql/schema.sql

-- The post's tables, with the post's names and columns.
CREATE TABLE IF NOT EXISTS `black_list` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `ip` varchar(64) NOT NULL,
  `detail` varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `black_list_country` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `country` varchar(5) NOT NULL,
  `detail` varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `ipcountry` (
  `ipstart` varchar(46) NOT NULL,
  `ipend` varchar(46) NOT NULL,
  `countrycode` varchar(5) NOT NULL,
  `ipfrom` bigint(11) NOT NULL,
  `ipto` bigint(11) NOT NULL,
  KEY `ipstart` (`ipstart`,`ipend`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1;

-- black_list.ip was varchar(32): too short for IPv6 networks ("2001:db8:85a3::8a2e:370:7334/128"
-- is 32, a full-form address with prefix is 43). Widening keeps the data.
ALTER TABLE `black_list` MODIFY `ip` varchar(64) NOT NULL;
-- The post's ipstart/ipend were varchar(20): too short for IPv6 text.
ALTER TABLE `ipcountry` MODIFY `ipstart` varchar(46) NOT NULL, MODIFY `ipend` varchar(46) NOT NULL;

-- Indexes the post's tables lack (lookups by value from the admin tool; range order).
ALTER TABLE `black_list` ADD INDEX IF NOT EXISTS `ip` (`ip`);
ALTER TABLE `black_list_country` ADD INDEX IF NOT EXISTS `country` (`country`);
ALTER TABLE `ipcountry` ADD INDEX IF NOT EXISTS `ipfrom_ipto` (`ipfrom`, `ipto`);

-- Ours: IPv6 country ranges. ipfrom/ipto are the 16-byte INET6_ATON() values, which compare
-- in address order; ipstart/ipend keep the text for people.
CREATE TABLE IF NOT EXISTS `ipcountry6` (
  `ipstart` varchar(46) NOT NULL,
  `ipend` varchar(46) NOT NULL,
  `countrycode` varchar(5) NOT NULL,
  `ipfrom` varbinary(16) NOT NULL,
  `ipto` varbinary(16) NOT NULL,
  KEY `ipfrom_ipto` (`ipfrom`, `ipto`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1;

-- Ours: the allow-list. Sources in it (addresses or CIDR networks, IPv4 or IPv6) get
-- $avp(wb_status) = "white" from check_blacklist and skip every other check.
CREATE TABLE IF NOT EXISTS `white_list` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `ip` varchar(64) NOT NULL,
  `detail` varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`),
  KEY `ip` (`ip`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Ours: SIP user names to refuse (matched exactly against $au / $fU).
CREATE TABLE IF NOT EXISTS `black_list_user` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `username` varchar(128) NOT NULL,
  `detail` varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`),
  KEY `username` (`username`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Ours: User-Agent substrings (case-insensitive) added to the config's scanner patterns.
CREATE TABLE IF NOT EXISTS `black_list_ua` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `pattern` varchar(128) NOT NULL,
  `detail` varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Ours: change counters. Every Kamailio worker polls this one small table each refresh_secs
-- and reloads only what changed, so a change made with sipguard-admin *or with plain SQL*
-- reaches every worker of every node within the refresh interval, without a restart and without
-- re-reading unchanged lists. The triggers below keep `lists` current and put the row back if
-- it was deleted (CREATE OR REPLACE: applying this file again upgrades older triggers, atomically;
-- the account applying it becomes their DEFINER and needs INSERT and UPDATE on this table).
-- `countries` is bumped by `sipguard-admin import-countries` and `reload` (raw edits of ipcountry
-- are also noticed through information_schema's UPDATE_TIME).
CREATE TABLE IF NOT EXISTS `sipguard_generation` (
  `name` varchar(32) NOT NULL,
  `gen` bigint unsigned NOT NULL DEFAULT 0,
  `changed` timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`name`)
) ENGINE=InnoDB;
-- A row created (or put back after a TRUNCATE) starts at the current time in ms, a value no worker
-- can have seen; a NULL or negative counter (a hand-made migration) is set the same way.
INSERT IGNORE INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)), ('countries', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000));

CREATE OR REPLACE TRIGGER `sg_black_list_ai` AFTER INSERT ON `black_list` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_au` AFTER UPDATE ON `black_list` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_ad` AFTER DELETE ON `black_list` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_white_list_ai` AFTER INSERT ON `white_list` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_white_list_au` AFTER UPDATE ON `white_list` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_white_list_ad` AFTER DELETE ON `white_list` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_country_ai` AFTER INSERT ON `black_list_country` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_country_au` AFTER UPDATE ON `black_list_country` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_country_ad` AFTER DELETE ON `black_list_country` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_user_ai` AFTER INSERT ON `black_list_user` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_user_au` AFTER UPDATE ON `black_list_user` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_user_ad` AFTER DELETE ON `black_list_user` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_ua_ai` AFTER INSERT ON `black_list_ua` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_ua_au` AFTER UPDATE ON `black_list_ua` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_black_list_ua_ad` AFTER DELETE ON `black_list_ua` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('lists', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);

-- Bans (sipguard.ban, sipguard-admin ban): a source refused by every node until `until_ms`.
-- Rows are only added while a ban is made or extended; workers read the new ones by `id`
-- (incrementally, when `bans` moves) and expire them on their own clock, so an ended ban needs
-- no write. A lifted ban is a DELETE (`ban_lifts` moves): workers then re-read the bans in force.
-- `until_ms` is Unix ms from the database's clock (FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) + ms).
CREATE TABLE IF NOT EXISTS `sipguard_ban` (
  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `source` varchar(64) NOT NULL COMMENT 'address or network, canonical (192.0.2.7, 198.51.100.0/24)',
  `until_ms` bigint unsigned NOT NULL COMMENT 'the ban ends then: Unix time in ms',
  `reason` varchar(255) NOT NULL DEFAULT '',
  `node` varchar(64) NOT NULL DEFAULT '' COMMENT 'who banned: a node name or sipguard-admin',
  `created` timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`id`),
  KEY `source` (`source`),
  KEY `until_ms` (`until_ms`)
) ENGINE=InnoDB;
INSERT IGNORE INTO `sipguard_generation` (`name`, `gen`) VALUES ('bans', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)), ('ban_lifts', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000));
CREATE OR REPLACE TRIGGER `sg_ban_ai` AFTER INSERT ON `sipguard_ban` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('bans', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
CREATE OR REPLACE TRIGGER `sg_ban_au` AFTER UPDATE ON `sipguard_ban` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) VALUES ('ban_lifts', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
-- Deleting ended bans (a purge) lifts nothing: only a row still in force moves `ban_lifts`.
CREATE OR REPLACE TRIGGER `sg_ban_ad` AFTER DELETE ON `sipguard_ban` FOR EACH ROW INSERT INTO `sipguard_generation` (`name`, `gen`) SELECT 'ban_lifts', FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) FROM DUAL WHERE OLD.`until_ms` > FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) ON DUPLICATE KEY UPDATE `gen` = IF(`gen` IS NULL OR `gen` < 1, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), `gen` + 1);
